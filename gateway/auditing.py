"""Audit records for requests that were denied or failed before changing anything."""

from __future__ import annotations

import logging

from fastapi import Request

import audit
import exchange
from gateway.platform import Platform

log = logging.getLogger("pdx.gateway")

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def audit_failure(request: Request, *, status: int, code: str, detail: str | None) -> None:
    """Record a denied request, or a failed state-changing one, in its own transaction.

    Successful changes are audited inside their own transaction by `exchange`; this
    covers what rolled back or never started (COMPLIANCE.md §5: denials and failures).
    """
    denied = status in (401, 403) or getattr(request.state, "audit_deny", False)
    if not denied and request.method in _SAFE_METHODS:
        return
    platform: Platform | None = getattr(request.app.state, "platform", None)
    if platform is None:
        return
    caller: exchange.Caller | None = getattr(request.state, "caller", None)
    subject = (
        caller.subject()
        if caller is not None
        else audit.Subject(
            None, None, client_ip(request), getattr(request.state, "request_id", None), None
        )
    )
    event_type = getattr(request.state, "audit_event", None) or (
        "auth.denied" if status == 401 else "request.denied" if denied else "request.failed"
    )
    event = audit.AuditEvent(
        event_type=event_type,
        action=f"{request.method} {request.url.path}"[:64],
        result=audit.Result.DENY if denied else audit.Result.FAILURE,
        object_id=getattr(request.state, "object_id", None),
        detail=f"{status} {code}: {detail or ''}",
    )
    try:
        with platform.session() as session, session.begin():
            audit.record(session, subject, event, now=platform.now())
    except Exception:  # noqa: BLE001 - never mask the original error; alert loudly instead
        log.critical("AUDIT PIPELINE FAILURE: could not record %s for %s", code, request.url.path)
