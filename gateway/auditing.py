"""Audit records for requests that were denied or failed before changing anything."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import Request

import audit
import exchange
from audit.catalogue import Event
from crypto.periodic import Periodic
from gateway.platform import Platform

log = logging.getLogger("pdx.gateway")

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Failures a flood repeats: authentication, rate limits, oversized bodies. These go
# through the burst aggregator (audit/bursts.py) instead of one row per request.
_FLOOD_STATUSES = frozenset({401, 413, 429})


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def audit_failure(request: Request, *, status: int, code: str, detail: str | None) -> None:
    """Record a denied request, or a failed state-changing one, in its own transaction.

    Successful changes are audited inside their own transaction by `exchange`; this
    covers what rolled back or never started (docs/compliance.md AUD-02: denials and failures).
    """
    write = failure_record(request, status=status, code=code, detail=detail)
    if write is not None:
        write()


def failure_record(
    request: Request, *, status: int, code: str, detail: str | None
) -> Callable[[], None] | None:
    """As `audit_failure`, in two steps: what is left to write (None: nothing).

    Deciding is cheap and safe on the event loop (a repeated flood failure is only counted
    in its burst); only the returned write touches the database, so a flood's refusals
    need no worker thread each.
    """
    denied = status in (401, 403) or getattr(request.state, "audit_deny", False)
    if not denied and request.method in _SAFE_METHODS:
        return None
    platform: Platform | None = getattr(request.app.state, "platform", None)
    if platform is None:
        return None
    caller: exchange.Caller | None = getattr(request.state, "caller", None)
    subject = (
        caller.subject()
        if caller is not None
        else audit.Subject(
            None, None, client_ip(request), getattr(request.state, "request_id", None), None
        )
    )
    event_type = getattr(request.state, "audit_event", None) or (
        Event.AUTH_DENIED
        if status == 401
        else Event.REQUEST_DENIED
        if denied
        else Event.REQUEST_FAILED
    )
    event = audit.AuditEvent(
        event_type=event_type,
        action=f"{request.method} {request.url.path}"[:64],
        result=audit.Result.DENY if denied else audit.Result.FAILURE,
        object_id=getattr(request.state, "object_id", None),
        detail=f"{status} {code}: {detail or ''}",
    )
    now = platform.now()
    bursts: audit.BurstAggregator | None = getattr(request.app.state, "audit_bursts", None)
    if (
        bursts is not None
        and status in _FLOOD_STATUSES
        and not bursts.observe(
            address=subject.subject_ip,
            event_type=event_type,
            subject_id=subject.subject_id or event.object_id,
            action=event.action,
            now=now,
        )
    ):
        return None  # counted in the open burst; written when its window ends
    path = request.url.path

    def write() -> None:
        try:
            with platform.session() as session, session.begin():
                audit.record(session, subject, event, now=now)
        except Exception:  # noqa: BLE001 - never mask the original error; alert loudly instead
            log.critical("AUDIT PIPELINE FAILURE: could not record %s for %s", code, path)

    return write


class BurstWriter:
    """Writes ended failure bursts every `interval_s` seconds, and all of them at stop."""

    def __init__(
        self, platform: Platform, bursts: audit.BurstAggregator, *, interval_s: float = 1.0
    ) -> None:
        self._platform = platform
        self._bursts = bursts
        self._ticking = Periodic(
            interval_s, thread="pdx-audit-bursts", job=self._write_due, log=log
        )

    def start(self) -> None:
        self._ticking.start()

    def stop(self) -> None:
        self._ticking.stop()
        self._write(self._bursts.drain())

    def _write_due(self) -> None:
        self._write(self._bursts.due(self._platform.now()))

    def _write(self, bursts: list[audit.Burst]) -> None:
        if not bursts:
            return
        try:
            with self._platform.session() as session, session.begin():
                for burst in bursts:
                    audit.record_burst(session, burst)
        except Exception:  # noqa: BLE001 - a background writer must keep running
            log.critical("AUDIT PIPELINE FAILURE: could not record %d failure bursts", len(bursts))
