"""Market pages for the enterprise (and both parties): offers, negotiation, agreements, budget.

Every read and action is the /v1 route it stands for (`ctx.api`, see `dispatch`): one
decision and one ledger entry per action, and nothing shown the API would not show.
Signatures over an agreement are made by the party with its own key (the SDK); the
console shows the digest to sign and carries the pasted signature, it holds no key.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from gateway.console import market_views as mv
from gateway.console import reads
from gateway.console.core import BASE, Ctx, Refusal, area_of, signed_in

router = APIRouter()
Enterprise = Annotated[Ctx, Depends(signed_in("enterprise"))]
Party = Annotated[Ctx, Depends(signed_in("enterprise", "provider"))]
Q = Annotated[str, Query(max_length=200)]


async def _list(ctx: Ctx, path: str, limit: int = 100) -> list[dict[str, Any]]:
    """One page of a market list (the newest `limit`), `state` normalised."""
    return [
        reads.normalised(i) for i in reads.items(await ctx.get_json(path, query={"limit": limit}))
    ]


async def _dataset_names(ctx: Ctx) -> dict[str, str]:
    found = reads.items(await ctx.get_json("/v1/datasets", query={"limit": 200}))
    return {d["id"]: str(d.get("name", d["id"])) for d in found if "id" in d}


def _home(ctx: Ctx) -> str:
    """The signed-in party's market page."""
    return f"{BASE}/{area_of(ctx.session)}/market"


# -- enterprise: the market, its offers and its own agreements ------------------------------


@router.get("/enterprise/market")
async def enterprise_market(ctx: Enterprise, q: Q = "") -> Response:
    query: dict[str, Any] = {"limit": 20}
    if q.strip():
        query["q"] = q.strip()
    catalog = await ctx.get_json("/v1/catalog", query=query)
    negotiations = await _list(ctx, "/v1/market/negotiations")
    agreements = await _list(ctx, "/v1/market/agreements")
    statements = await _list(ctx, "/v1/market/statements")
    return ctx.render(
        "market_enterprise.html",
        title=ctx.t("market_title"),
        q=q,
        listings=reads.items(catalog),
        listings_total=reads.total(catalog),
        negotiations=negotiations,
        waiting=mv.waiting_for(negotiations, ctx.person.org_id),
        agreements=[{**a, "meters": mv.meters(a)} for a in agreements],
        statements=statements,
    )


@router.get("/enterprise/market/products/{product_id}")
async def offer_page(product_id: str, ctx: Enterprise) -> Response:
    """A listed product's offers, each with the form that requests an agreement from it."""
    product = await ctx.found_json(f"/v1/market/products/{product_id}")
    return ctx.render(
        "market_product.html", title=product["title"], product=product, side="consumer"
    )


@router.post("/enterprise/market/negotiations")
async def start_negotiation(ctx: Enterprise) -> Response:
    """POST /v1/market/negotiations: request an offer as published (DSP request)."""
    form = await ctx.request.form()

    def text(name: str) -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else ""

    body: dict[str, Any] = {"offer_id": text("offer_id"), "purpose": text("purpose")}
    for optional in ("dua_reference", "legal_basis"):
        if text(optional):
            body[optional] = text(optional)
    answer = await ctx.api("POST", "/v1/market/negotiations", json_body=body)
    if not answer.ok:
        ctx.session.flash.append(answer.problem())
        product = text("product_id")
        back = f"{BASE}/enterprise/market/products/{product}" if product else _home(ctx)
        return ctx.redirect(back)
    ctx.session.flash.append(ctx.t("negotiation_requested"))
    return ctx.redirect(f"{BASE}/market/negotiations/{answer.json()['id']}")


@router.get("/enterprise/budget")
async def budget_page(ctx: Enterprise) -> Response:
    """ε spent per dataset the enterprise uses: its share of each lineage, and over time."""
    computations = reads.items(await ctx.get_json("/v1/computations", query={"limit": 200}))
    agreements = await _list(ctx, "/v1/market/agreements")
    used: list[str] = []
    for comp in computations:
        used += [i["dataset_id"] for i in comp.get("inputs", []) if isinstance(i, dict)]
    for a in agreements:
        used += [d for d in a.get("datasets", []) if isinstance(d, str)]
    names = await _dataset_names(ctx)
    budgets = []
    for dataset_id in list(dict.fromkeys(used))[:50]:
        answer = await ctx.api("GET", f"/v1/datasets/{dataset_id}/privacy-budget")
        if not answer.ok:
            continue  # a dataset the enterprise may no longer read: the API says so
        b = answer.json()
        mine = reads.items(b.get("requesters"))
        b["mine"] = mine[0]["epsilon_spent"] if mine else 0.0
        b["name"] = names.get(dataset_id, dataset_id)
        budgets.append(b)
    series = mv.epsilon_by_dataset(computations)
    return ctx.render(
        "budget.html",
        title=ctx.t("budget_title"),
        budgets=budgets,
        plot=mv.epsilon_plot(ctx.t("plot_epsilon"), series, names),
        agreements=[{**a, "meters": mv.meters(a)} for a in agreements],
    )


# -- both parties: one negotiation, one agreement, one statement ----------------------------


@router.get("/market/negotiations/{negotiation_id}")
async def negotiation_page(negotiation_id: str, ctx: Party) -> Response:
    n = await ctx.found_json(f"/v1/market/negotiations/{negotiation_id}")
    n = reads.normalised(n)
    product = await ctx.get_json(f"/v1/market/products/{n['product_id']}")
    party = await ctx.get_json(f"/v1/market/parties/{ctx.person.org_id}")
    view = mv.negotiation_view(n, ctx.person.org_id, product, party)
    return ctx.render("market_negotiation.html", title=ctx.t("negotiation"), **view)


@router.post("/market/negotiations/{negotiation_id}/{step}")
async def negotiation_step(negotiation_id: str, step: str, ctx: Party) -> Response:
    """One DSP step through its /v1 route; signatures are the party's own, pasted here."""
    if step not in mv.STEPS:
        raise Refusal(404, ctx.t("not_found"))
    back = f"{BASE}/market/negotiations/{negotiation_id}"
    form = await ctx.request.form()

    def text(name: str) -> str:
        value = form.get(name)
        return value if isinstance(value, str) else ""

    body: Any = None
    try:
        if step in mv.WITH_TERMS:
            body = {"terms": mv.parse_terms(text("terms"))}
        elif step in mv.SIGNING:
            upload = form.get("signature_file")
            data = None
            if isinstance(upload, UploadFile):
                data = await upload.read(mv.MAX_SIGNATURE_BYTES + 1) or None
            body = mv.parse_signature(text("key_id"), text("signature"), data)
        elif step == "terminate":
            body = {"reason": text("reason")[:500]}
    except ValueError as exc:
        ctx.session.flash.append(str(exc))
        return ctx.redirect(back)
    path = f"/v1/market/negotiations/{negotiation_id}/{step}"
    answer = (
        await ctx.api("POST", path, json_body=body)
        if body is not None
        else (await ctx.api("POST", path))
    )
    ctx.session.flash.append(ctx.t("done") if answer.ok else answer.problem())
    if answer.ok and answer.json().get("agreement_id"):
        return ctx.redirect(f"{BASE}/market/agreements/{answer.json()['agreement_id']}")
    return ctx.redirect(back)


@router.get("/market/agreements/{agreement_id}")
async def agreement_page(agreement_id: str, ctx: Party) -> Response:
    a = await ctx.found_json(f"/v1/market/agreements/{agreement_id}")
    return ctx.render(
        "market_agreement.html",
        title=ctx.t("agreement"),
        a=reads.normalised(a),
        meters=mv.meters(a),
        document=mv.pretty(a.get("document")),
    )


@router.get("/market/statements/{statement_id}")
async def statement_page(statement_id: str, ctx: Party) -> Response:
    st = await ctx.found_json(f"/v1/market/statements/{statement_id}")
    disputes = [
        d
        for d in reads.items(await ctx.get_json("/v1/market/disputes", query={"limit": 200}))
        if d.get("statement_id") == statement_id
    ]
    view = mv.statement_view(st, disputes)
    return ctx.render("market_statement.html", title=ctx.t("statement"), **view)


@router.post("/market/statements/{statement_id}/disputes")
async def open_dispute(statement_id: str, ctx: Party) -> Response:
    form = await ctx.request.form()
    line, reason = form.get("line"), form.get("reason")
    try:
        number = int(line) if isinstance(line, str) else 0
    except ValueError:
        number = 0
    body = {"line": number, "reason": reason if isinstance(reason, str) else ""}
    answer = await ctx.api("POST", f"/v1/market/statements/{statement_id}/disputes", json_body=body)
    ctx.session.flash.append(ctx.t("dispute_opened") if answer.ok else answer.problem())
    return ctx.redirect(f"{BASE}/market/statements/{statement_id}")
