"""Auditor and security-admin pages: ledger, proofs, records, decisions, policies, keys."""

from __future__ import annotations

import difflib
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from gateway.console import reads
from gateway.console.core import BASE, SECURITY_HEADERS, Ctx, Refusal, signed_in

router = APIRouter()
Auditor = Annotated[Ctx, Depends(signed_in("auditor"))]
Admin = Annotated[Ctx, Depends(signed_in("admin"))]
Text = Annotated[str, Query(max_length=128)]
Index = Annotated[int, Query(ge=0, le=2**53)]
RECENT = 30
LISTED = 25  # audit records and decision logs per panel
DRY_RUN = 500  # recent decisions a policy change is dry-run against
KEY_TTL = timedelta(minutes=5)


async def verifier_key(ctx: Ctx) -> str:
    """The log's verifier key (public; `name+hash+base64(alg || key)`).

    What the browser checks checkpoint signatures with; a session reads it once per few
    minutes.
    """

    async def read() -> str | None:
        answer = await ctx.api("GET", "/v1/ledger/verifier-key")
        return answer.body.decode().strip() if answer.ok else None

    key: str | None = await ctx.remembered("verifier_key", KEY_TTL, read)
    return key or ""


async def checkpoint(ctx: Ctx) -> tuple[int, str]:
    """The newest signed checkpoint (public, no decision): its tree size and note text."""
    note = await ctx.api("GET", "/v1/ledger/checkpoint")
    if not note.ok:
        raise Refusal(503, note.problem())
    text = note.body.decode()
    return int(text.split("\n")[1]), text


async def _ledger_recent(ctx: Ctx, sealed: int) -> list[dict[str, Any]]:
    """The newest entries around the sealed size, newest first: one call in either shape."""
    page = await ctx.get_json(
        "/v1/ledger/entries", query={"start": max(0, sealed - RECENT), "limit": RECENT + 10}
    )
    return list(reversed(reads.items(page)))


@router.get("/auditor")
async def auditor_home(
    ctx: Auditor,
    event_type: Text = "",
    result: Text = "",
    subject: Text = "",
    decision: Text = "",
) -> Response:
    """First paint: the newest ledger entries, each checkable in the browser.

    Audit records, decision logs, charts, checkpoints and compliance runs are panels
    htmx loads afterwards (`panels`), each its own audited read; the filters travel to
    them in the query.
    """
    sealed, _ = await checkpoint(ctx)
    entries = await _ledger_recent(ctx, sealed)
    f = {"event_type": event_type, "result": result, "subject": subject, "decision": decision}
    return ctx.render(
        "auditor.html",
        title=ctx.t("auditor_title"),
        entries=entries,
        sealed=sealed,
        f=f,
        query=urlencode({k: v for k, v in f.items() if v}),
    )


@router.get("/auditor/panels/records")
async def records_panel(
    ctx: Auditor, event_type: Text = "", result: Text = "", subject: Text = ""
) -> Response:
    """The newest audit records matching the filters (one audited `audit.read`)."""
    filters = {"event_type": event_type, "result": result, "subject": subject, "limit": LISTED}
    body = await ctx.get_json("/v1/audit/records", query=filters)
    return ctx.render("_records.html", records=reads.items(body), total=reads.total(body) or 0)


@router.get("/auditor/panels/decision-logs")
async def decision_logs_panel(ctx: Auditor, decision: Text = "") -> Response:
    """Decision logs, allowed or denied (one audited `audit.read`)."""
    body = await ctx.get_json(
        "/v1/audit/decisions",
        query={"result": decision if decision in ("allow", "deny") else "", "limit": LISTED},
    )
    return ctx.render("_decision_logs.html", decisions=[decision_row(d) for d in reads.items(body)])


def decision_row(d: dict[str, Any]) -> dict[str, Any]:
    """A decision-log event (OPA's shape) as a table row: when, who, what, allowed."""
    raw = d.get("input")
    doc: dict[str, Any] = raw if isinstance(raw, dict) else {}
    who = doc.get("subject")
    subject: dict[str, Any] = who if isinstance(who, dict) else {}
    return {
        "at": d.get("timestamp") or d.get("ts") or "",
        "subject": subject.get("id") or d.get("subject_id") or "",
        "action": doc.get("action") or "",
        "allow": allowed(d),
    }


def allowed(d: dict[str, Any]) -> bool:
    """Whether a decision-log event allowed: its result's `allow` (OPA's shape)."""
    result = d.get("result")
    if isinstance(result, dict):
        return result.get("allow") is True
    if isinstance(result, bool):
        return result
    return d.get("allow") is True


@router.get("/auditor/proof")
async def proof(ctx: Auditor, index: Index) -> Response:
    """What the browser needs to check inclusion itself (static/proof.js).

    The entry, the signed checkpoint and the RFC 9162 proof against the checkpoint's
    tree size; the browser trusts none of it beyond what it hashes.
    """
    size, text = await checkpoint(ctx)
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
            "verifier_key": await verifier_key(ctx),
        },
        headers=SECURITY_HEADERS,
    )


@router.get("/auditor/consistency")
async def consistency(ctx: Auditor, height: Index) -> Response:
    """What the browser needs to check block `height`'s checkpoint against the newest.

    Both signed notes, the verifier key and the RFC 9162 §2.1.4 consistency proof; the
    browser (static/proof.js) checks both signatures and the proof itself.
    """
    block = await ctx.found_json(f"/v1/ledger/blocks/{height}")
    size, text = await checkpoint(ctx)
    first = int(block["tree_size"])
    hashes: list[str] = []
    if 0 < first < size:
        path = await ctx.get_json(
            "/v1/ledger/proof/consistency", query={"first": first, "second": size}
        )
        if path is None:
            raise Refusal(503, ctx.t("not_found"))
        hashes = path["hashes"]
    return JSONResponse(
        {
            "first": first,
            "second": size,
            "old_checkpoint": block["checkpoint"],
            "checkpoint": text,
            "hashes": hashes,
            "verifier_key": await verifier_key(ctx),
        },
        headers=SECURITY_HEADERS,
    )


# -- security admin -----------------------------------------------------------------------


@router.get("/admin")
async def admin_home(ctx: Admin) -> Response:
    """First paint: the active policy and its history.

    Keys, organisations and compliance runs are panels htmx loads afterwards (`panels`).
    """
    active = await ctx.get_json("/v1/policies")
    history = reads.items(await ctx.get_json("/v1/policies/history"))
    return ctx.render(
        "admin.html", title=ctx.t("admin_title"), active=active or {}, history=history
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


@router.post("/admin/policies/dry-run")
async def policy_dry_run(ctx: Admin) -> Response:
    """POST /v1/policies/dry-run: the change re-decides the recent decisions (nothing stored).

    The answer counts flips per action and names nobody: the security admin learns the
    effect of a change without reading the audit trail.
    """
    form = await ctx.request.form()
    name, source = str(form.get("module", "")), str(form.get("source", ""))
    answer = await ctx.api(
        "POST", "/v1/policies/dry-run", json_body={"modules": {name: source}, "limit": DRY_RUN}
    )
    if not answer.ok:
        return ctx.render("_dry_run.html", run=None, problem=answer.problem())
    return ctx.render("_dry_run.html", run=answer.json(), problem=None)


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
