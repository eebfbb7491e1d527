"""Provider and enterprise pages: register and approve; browse, request, follow, fetch."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from exchange.levels import Level, OpenAttribute, ShareAttribute
from exchange.schemas import ImpactDegree, ImpactObject
from gateway.console import job_plots, pages_jobkeys, pages_rules, reads, results
from gateway.console.core import BASE, Ctx, Refusal, signed_in
from gateway.console.forms import FormError, fields, params_from_form

router = APIRouter()
Provider = Annotated[Ctx, Depends(signed_in("provider"))]
Enterprise = Annotated[Ctx, Depends(signed_in("enterprise"))]

# State words as `reads.state` gives them (snake_case, whichever field the server used).
RUN_STAGE = ("awaiting_approval",)
RELEASE_STAGE = ("review", "awaiting_release")
WAITING = RUN_STAGE + RELEASE_STAGE
TERMINAL = ("released", "rejected", "failed")
# The operator catalogue changes only with a release of the server: one read per session
# per few minutes is enough (it is the slowest list: each operator's JSON Schema).
OPERATORS_TTL = timedelta(minutes=5)
MAX_CSV_BYTES = 64 << 20  # the console's form upload; larger files go through the API/SDK
ENUMS = {
    "level": [v.value for v in Level],
    "impact_object": [v.value for v in ImpactObject],
    "impact_degree": [v.value for v in ImpactDegree],
    "share_attribute": [v.value for v in ShareAttribute],
    "open_attribute": [v.value for v in OpenAttribute],
}


def _items(body: Any) -> list[dict[str, Any]]:
    """A list answer in any of the API's shapes (see `reads.items`)."""
    return reads.items(body)


async def _computations(ctx: Ctx) -> list[dict[str, Any]]:
    """The caller's computations, `state` in snake_case whichever field the server used."""
    found = _items(await ctx.get_json("/v1/computations", query={"limit": 200}))
    return [reads.normalised(c) for c in found]


async def _operators(ctx: Ctx) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]] | None:
        body = await ctx.get_json("/v1/operators")
        return None if body is None else _items(body)

    found: list[dict[str, Any]] | None = await ctx.remembered("operators", OPERATORS_TTL, read)
    return found or []


# -- provider -----------------------------------------------------------------------------


@router.get("/provider")
async def provider_home(ctx: Provider) -> Response:
    datasets = _items(
        await ctx.get_json("/v1/datasets", query={"owner_org": ctx.person.org_id, "limit": 200})
    )
    computations = await _computations(ctx)
    waiting = [c for c in computations if c["state"] in WAITING]
    return ctx.render(
        "provider.html",
        title=ctx.t("provider_title"),
        datasets=datasets,
        waiting=waiting,
        computations=computations,
        enums=ENUMS,
    )


def _multipart(metadata: dict[str, Any], filename: str, data: bytes) -> tuple[bytes, str]:
    """The registration's multipart body: the metadata part first, then the file."""
    boundary = secrets.token_hex(16)
    safe_name = filename.replace('"', "").replace("\r", "").replace("\n", "")[:128] or "data.csv"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n'
        "Content-Type: application/json\r\n\r\n"
    ).encode()
    body += json.dumps(metadata).encode() + b"\r\n"
    body += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{safe_name}"\r\nContent-Type: text/csv\r\n\r\n'
    ).encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@router.post("/provider/datasets")
async def register(ctx: Provider) -> Response:
    """POST /v1/datasets with the form's metadata and file: one decision, one entry."""
    form = await ctx.request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        ctx.session.flash.append(ctx.t("file_missing"))
        return ctx.redirect(f"{BASE}/provider")
    data = await upload.read(MAX_CSV_BYTES + 1)
    if len(data) > MAX_CSV_BYTES:
        raise Refusal(413, ctx.t("file_too_large"))

    def text(name: str) -> str:
        return str(form.get(name, "")).strip()

    metadata: dict[str, Any] = {
        "name": text("name"),
        "classification_path": [p.strip() for p in text("classification_path").split("/") if p],
        "level": text("level"),
        "impact_object": text("impact_object"),
        "impact_degree": text("impact_degree"),
        "source_agency": text("source_agency"),
        "accountable_department": text("accountable_department"),
        "pi": form.get("pi") == "on",
        "sensitive_pi": form.get("sensitive_pi") == "on",
        "share_attribute": text("share_attribute"),
        "open_attribute": text("open_attribute"),
    }
    if text("description"):
        metadata["description"] = text("description")
    body, ctype = _multipart(metadata, upload.filename or "data.csv", data)
    answer = await ctx.api("POST", "/v1/datasets", body=body, content_type=ctype)
    if not answer.ok:
        ctx.session.flash.append(answer.problem())
        return ctx.redirect(f"{BASE}/provider")
    ctx.session.flash.append(ctx.t("registered"))
    created = answer.json()
    return ctx.redirect(f"{BASE}/provider/datasets/{created['id']}?entry={created['ledger_index']}")


@router.get("/provider/datasets/{dataset_id}")
async def dataset_page(
    dataset_id: str, ctx: Provider, entry: Annotated[int | None, Query(ge=0, le=2**53)] = None
) -> Response:
    """The dataset's grading and per-field scan report; `entry`: its registration's index."""
    dataset = await ctx.get_json(f"/v1/datasets/{dataset_id}")
    if dataset is None:
        return ctx.redirect(f"{BASE}/provider")
    if dataset.get("ledger_index") is None:
        dataset["ledger_index"] = entry
    operators = [str(o.get("name", "")) for o in await _operators(ctx)]
    return ctx.render(
        "dataset.html",
        title=dataset["name"],
        dataset=dataset,
        rules=await pages_rules.rules_of(ctx, dataset_id),
        operators=[o for o in operators if o],
    )


@router.post("/provider/computations/{computation_id}/{verdict}")
async def decide(computation_id: str, verdict: str, ctx: Provider) -> Response:
    if verdict not in ("approve", "reject"):
        raise Refusal(404, ctx.t("not_found"))
    form = await ctx.request.form()
    reason = str(form.get("reason", ""))[:500]
    route = verdict_route(ctx.console.routes, verdict, form.get("state"))
    path = f"/v1/computations/{computation_id}/{route}"
    answer = await ctx.api("POST", path, json_body={"reason": reason})
    ctx.session.flash.append(ctx.t("done") if answer.ok else answer.problem())
    return ctx.redirect(f"{BASE}/provider")


def verdict_route(routes: reads.Routes, verdict: str, shown_state: Any) -> str:
    """`approve-run` or `approve-release` where the server offers them, else `approve`.

    The stage comes from the state the provider saw on the page: approving a release
    when a run was shown (or the reverse) then fails with 409 instead of doing the
    other thing. `reject` kept one path.
    """
    if verdict != "approve":
        return verdict
    shown = reads.word(shown_state)
    stage = "run" if shown in RUN_STAGE else "release" if shown in RELEASE_STAGE else None
    if stage and routes.offers("POST", f"/v1/computations/{{computation_id}}/approve-{stage}"):
        return f"approve-{stage}"
    return "approve"


# -- enterprise ---------------------------------------------------------------------------


async def _catalog(ctx: Ctx, q: str, level: str) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"limit": 200}
    if level in ENUMS["level"]:
        query["level"] = level
    found = _items(await ctx.get_json("/v1/datasets", query=query))
    needle = q.strip().lower()
    if needle:
        found = [
            d
            for d in found
            if needle in d["name"].lower()
            or any(needle in p.lower() for p in d.get("classification_path", []))
        ]
    return found


Q = Annotated[str, Query(max_length=200)]


@router.get("/enterprise")
async def enterprise_home(ctx: Enterprise, q: Q = "", level: Q = "") -> Response:
    catalog = await _catalog(ctx, q, level)
    operators = await _operators(ctx)
    computations = await _computations(ctx)
    return ctx.render(
        "enterprise.html",
        title=ctx.t("enterprise_title"),
        catalog=catalog,
        operators=operators,
        computations=computations,
        durations=job_plots.durations_plot(computations, ctx.t),
        q=q,
        level=level,
        levels=ENUMS["level"],
    )


@router.get("/enterprise/catalog")
async def catalog_fragment(ctx: Enterprise, q: Q = "", level: Q = "") -> Response:
    """The catalogue table alone, for htmx's live search."""
    return ctx.render("_catalog.html", catalog=await _catalog(ctx, q, level))


async def _operator(ctx: Ctx, name: str) -> dict[str, Any]:
    for op in await _operators(ctx):
        if op["name"] == name:
            return op
    raise Refusal(404, ctx.t("not_found"))


@router.get("/enterprise/request")
async def request_form(ctx: Enterprise, operator: Q) -> Response:
    op = await _operator(ctx, operator)
    return ctx.render(
        "request.html",
        title=op["name"],
        operator=op,
        fields=fields(op["parameters"]),
        catalog=await _catalog(ctx, "", ""),
        job_key_option=pages_jobkeys.takes_job_key(op["name"]),
        job_key_bits=pages_jobkeys.KEY_BITS,
    )


@router.post("/enterprise/request")
async def request_computation(ctx: Enterprise) -> Response:
    """POST /v1/computations with params read back through the operator's schema."""
    form = await ctx.request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    op = await _operator(ctx, values.get("operator", ""))
    try:
        params = params_from_form(op["parameters"], values)
        job_key = pages_jobkeys.job_key_from_form(values, missing=ctx.t("jk_no_key"))
    except FormError as exc:
        ctx.session.flash.append(str(exc))
        return ctx.redirect(f"{BASE}/enterprise/request?operator={op['name']}")
    body: dict[str, Any] = {
        "operator": op["name"],
        "inputs": [v for v in form.getlist("inputs") if isinstance(v, str)],
        "params": params,
        "purpose": values.get("purpose", "").strip(),
    }
    for optional in ("legal_basis", "contract_id"):
        if values.get(optional, "").strip():
            body[optional] = values[optional].strip()
    if job_key is not None:  # its public half only: the private half never leaves the browser
        body["job_key"] = job_key
    answer = await ctx.api("POST", "/v1/computations", json_body=body)
    if not answer.ok:
        ctx.session.flash.append(answer.problem())
        return ctx.redirect(f"{BASE}/enterprise/request?operator={op['name']}")
    return ctx.redirect(f"{BASE}/enterprise/computations/{answer.json()['id']}")


async def _progress(ctx: Ctx, computation_id: str) -> dict[str, Any]:
    comp = await ctx.found_json(f"/v1/computations/{computation_id}")
    comp = reads.normalised(comp)
    return {"comp": comp, "terminal": comp["state"] in TERMINAL}


@router.get("/enterprise/computations/{computation_id}")
async def computation_page(computation_id: str, ctx: Enterprise) -> Response:
    view = await _progress(ctx, computation_id)
    return ctx.render("computation.html", title=ctx.t("computation"), **view)


@router.get("/enterprise/computations/{computation_id}/progress")
async def computation_progress(computation_id: str, ctx: Enterprise) -> Response:
    """The state block alone; htmx polls it until the computation ends."""
    return ctx.render("_progress.html", **(await _progress(ctx, computation_id)))


@router.get("/enterprise/computations/{computation_id}/result")
async def computation_result(computation_id: str, ctx: Enterprise) -> Response:
    """The released output (each fetch is a delivery on the ledger, as over the API)."""
    comp = await ctx.get_json(f"/v1/computations/{computation_id}")
    if comp is None:
        return ctx.redirect(f"{BASE}/enterprise/computations/{computation_id}")
    fingerprint = pages_jobkeys.fingerprint_of(comp)
    if fingerprint is not None:  # an encrypted aggregate: the browser fetches and opens it
        return pages_jobkeys.sealed_page(ctx, reads.normalised(comp), fingerprint)
    result = await ctx.get_json(f"/v1/computations/{computation_id}/result")
    if result is None:
        return ctx.redirect(f"{BASE}/enterprise/computations/{computation_id}")
    return ctx.render(
        "result.html",
        title=ctx.t("result"),
        result=result,
        digest=reads.digest(result),
        rows=_rows(result),
        charts=results.charts(result.get("output"), ctx.t),
    )


def _rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The output flattened to (path, value) rows for a plain table."""
    out: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
            out.append((prefix, ", ".join(str(v) for v in value)))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)
        else:
            out.append((prefix, str(value)))

    walk("", result.get("output", {}))
    return out[:500]
