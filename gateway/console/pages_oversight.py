"""Auditor and security-admin pages: ledger, proofs, records, decisions, policies, keys."""

from __future__ import annotations

import difflib
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from markupsafe import Markup

from gateway.console import plots
from gateway.console.core import BASE, SECURITY_HEADERS, Ctx, Refusal, signed_in
from gateway.console.pages_parties import _items

router = APIRouter()
Auditor = Annotated[Ctx, Depends(signed_in("auditor"))]
Admin = Annotated[Ctx, Depends(signed_in("admin"))]
Text = Annotated[str, Query(max_length=128)]
Index = Annotated[int, Query(ge=0, le=2**53)]
RECENT = 40


def _when(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None


async def _growth(ctx: Ctx) -> Markup:
    blocks = _items(await ctx.get_json("/v1/ledger/blocks", query={"start": 0}))
    points = []
    for b in blocks:
        at = _when(b.get("time", ""))
        if at is not None:
            points.append((at.timestamp(), float(b["tree_size"])))
    labels = (blocks[0]["time"][:16], blocks[-1]["time"][:16]) if blocks else ("", "")
    return plots.line(ctx.t("plot_growth"), points, labels)


async def _decisions_plot(ctx: Ctx) -> Markup:
    since = (ctx.console.clock() - timedelta(hours=24)).astimezone(UTC)
    body = await ctx.get_json(
        "/v1/audit/decisions", query={"since": since.isoformat(), "limit": 1000}
    )
    allowed: Counter[str] = Counter()
    denied: Counter[str] = Counter()
    for d in _items(body):
        hour = str(d.get("ts", ""))[11:13] + ":00"
        (allowed if d.get("allow") else denied)[hour] += 1
    hours = sorted(set(allowed) | set(denied))
    buckets = [(h, allowed[h], denied[h]) for h in hours]
    return plots.bars(ctx.t("plot_decisions"), buckets, (ctx.t("allowed"), ctx.t("denied")))


async def _ledger_recent(ctx: Ctx) -> tuple[list[dict[str, Any]], int]:
    first = await ctx.get_json("/v1/ledger/entries", query={"start": 0, "limit": 1})
    if first is None:
        return [], 0
    size = int(first.get("tree_size", 0))
    page = await ctx.get_json(
        "/v1/ledger/entries", query={"start": max(0, size - RECENT), "limit": RECENT * 2}
    )
    entries = list(reversed((page or {}).get("entries", [])))
    return entries, size


@router.get("/auditor")
async def auditor_home(
    ctx: Auditor,
    event_type: Text = "",
    result: Text = "",
    subject: Text = "",
    decision: Text = "",
) -> Response:
    entries, sealed = await _ledger_recent(ctx)
    filters = {"event_type": event_type, "result": result, "subject": subject, "limit": 50}
    records = await ctx.get_json("/v1/audit/records", query=filters)
    decisions = await ctx.get_json(
        "/v1/audit/decisions",
        query={"result": decision if decision in ("allow", "deny") else "", "limit": 50},
    )
    return ctx.render(
        "auditor.html",
        title=ctx.t("auditor_title"),
        entries=entries,
        sealed=sealed,
        records=_items(records),
        records_total=(records or {}).get("total", 0),
        decisions=_items(decisions),
        growth=await _growth(ctx),
        decisions_plot=await _decisions_plot(ctx),
        f={"event_type": event_type, "result": result, "subject": subject, "decision": decision},
    )


@router.get("/auditor/proof")
async def proof(ctx: Auditor, index: Index) -> Response:
    """What the browser needs to check inclusion itself (static/proof.js).

    The entry, the signed checkpoint and the RFC 9162 proof against the checkpoint's
    tree size; the browser trusts none of it beyond what it hashes.
    """
    note = await ctx.api("GET", "/v1/ledger/checkpoint")
    if not note.ok:
        raise Refusal(503, note.problem())
    text = note.body.decode()
    lines = text.split("\n")
    size = int(lines[1])
    entry = await ctx.get_json(f"/v1/ledger/entries/{index}")
    if entry is None or index >= size:
        return JSONResponse(
            {"index": index, "tree_size": size, "sealed": False}, headers=SECURITY_HEADERS
        )
    path = await ctx.get_json(
        "/v1/ledger/proof/inclusion", query={"index": index, "tree_size": size}
    )
    if path is None:
        raise Refusal(503, ctx.t("not_found"))
    return JSONResponse(
        {
            "index": index,
            "tree_size": size,
            "sealed": True,
            "leaf": entry["leaf"],
            "hashes": path["hashes"],
            "checkpoint": text,
        },
        headers=SECURITY_HEADERS,
    )


# -- security admin -----------------------------------------------------------------------


@router.get("/admin")
async def admin_home(ctx: Admin) -> Response:
    active = await ctx.get_json("/v1/policies")
    history = _items(await ctx.get_json("/v1/policies/history"))
    keys = _items(await ctx.get_json("/v1/kms/keys"))
    orgs = _items(await ctx.get_json("/v1/organisations"))
    runs = await ctx.get_json("/v1/compliance/runs", query={"limit": 10})
    return ctx.render(
        "admin.html",
        title=ctx.t("admin_title"),
        active=active or {},
        history=history,
        keys=keys[:100],
        orgs=orgs,
        runs=(runs or {}).get("runs", []),
        trend=(runs or {}).get("trend", []),
    )


def _diff(old: str, new: str, name: str) -> list[str]:
    return list(
        difflib.unified_diff(
            old.splitlines(), new.splitlines(), f"a/{name}", f"b/{name}", lineterm=""
        )
    )


@router.post("/admin/policies/diff")
async def policy_diff(ctx: Admin) -> Response:
    """The change against the active module, shown before anything is activated."""
    form = await ctx.request.form()
    name, source = str(form.get("module", "")), str(form.get("source", ""))
    active = await ctx.get_json("/v1/policies") or {}
    old = active.get("sources", {}).get(name, "")
    return ctx.render("_diff.html", diff=_diff(old, source, name), module=name, source=source)


@router.post("/admin/policies/activate")
async def policy_activate(ctx: Admin) -> Response:
    """PUT /v1/policies/modules/{name}: validated, tested, one ledger entry."""
    form = await ctx.request.form()
    name, source = str(form.get("module", "")), str(form.get("source", ""))
    answer = await ctx.api("PUT", f"/v1/policies/modules/{name}", json_body={"source": source})
    ctx.session.flash.append(
        ctx.t("activated", revision=answer.json()["revision"]) if answer.ok else answer.problem()
    )
    return ctx.redirect(f"{BASE}/admin")


@router.post("/admin/policies/rollback/{revision}")
async def policy_rollback(revision: int, ctx: Admin) -> Response:
    """Re-activate an earlier revision's bundle as a new revision (history is kept)."""
    if not 0 <= revision < 2**31:
        raise Refusal(404, ctx.t("not_found"))
    old = await ctx.get_json(f"/v1/policies/revisions/{revision}")
    if old is None:
        return ctx.redirect(f"{BASE}/admin")
    answer = await ctx.api(
        "PUT", "/v1/policies", json_body={"modules": old["sources"], "matrix": old["matrix"]}
    )
    ctx.session.flash.append(
        ctx.t("activated", revision=answer.json()["revision"]) if answer.ok else answer.problem()
    )
    return ctx.redirect(f"{BASE}/admin")


@router.post("/compliance/run")
async def compliance_run(ctx: Admin) -> Response:
    answer = await ctx.api("POST", "/v1/compliance/runs")
    ctx.session.flash.append(ctx.t("done") if answer.ok else answer.problem())
    return ctx.redirect(f"{BASE}/admin")
