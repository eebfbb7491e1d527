"""The provider's analysis rules on its dataset page: read them, replace them (one API call)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from gateway.console.core import BASE, Ctx, signed_in

router = APIRouter()
Provider = Annotated[Ctx, Depends(signed_in("provider"))]

NUMBERS = {
    "min_cohort": int,
    "epsilon_per_query": float,
    "budget_epsilon": float,
    "requester_budget_epsilon": float,
}


async def rules_of(ctx: Ctx, dataset_id: str) -> dict[str, Any] | None:
    """The dataset's rules as the API shows them to its provider, or None if unreadable."""
    answer = await ctx.api("GET", f"/v1/datasets/{dataset_id}/analysis-rules")
    body: dict[str, Any] | None = answer.json() if answer.ok else None
    return body


def rules_from_form(form: Any) -> dict[str, Any] | str:
    """The rules the form describes, or the message key of what is wrong with it.

    Empty fields are left out (no rule); the API validates the rest and answers with
    its own problem for anything out of range.
    """
    rules: dict[str, Any] = {}
    operators = [str(o) for o in form.getlist("operators") if str(o)]
    if operators:
        rules["operators"] = operators
    for name, kind in NUMBERS.items():
        raw = str(form.get(name, "")).strip()
        if raw:
            try:
                rules[name] = kind(raw)
            except ValueError:
                return "rules_bad_number"
    columns = str(form.get("columns", "")).strip()
    if columns:
        try:
            parsed = json.loads(columns)
        except json.JSONDecodeError:
            return "rules_bad_json"
        if not isinstance(parsed, dict):
            return "rules_bad_json"
        rules["columns"] = parsed
    derived = str(form.get("derived_from", "")).strip()
    if derived:
        rules["derived_from"] = derived
    return rules


@router.post("/provider/datasets/{dataset_id}/rules")
async def set_rules(dataset_id: str, ctx: Provider) -> Response:
    """Replace the dataset's rules through `PUT /v1/datasets/{id}/analysis-rules`."""
    rules = rules_from_form(await ctx.request.form())
    if isinstance(rules, str):
        ctx.session.flash.append(ctx.t(rules))
    else:
        answer = await ctx.api("PUT", f"/v1/datasets/{dataset_id}/analysis-rules", json_body=rules)
        ctx.session.flash.append(ctx.t("rules_saved") if answer.ok else answer.problem())
    return ctx.redirect(f"{BASE}/provider/datasets/{dataset_id}")
