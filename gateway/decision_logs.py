"""Decision logs: policy decisions (allowed or denied) buffered and stored in `audit`'s table.

The decision point lives in `policies` and the durable log in `audit`; neither imports the
other, so the conversion between them sits here, at the composition root.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import datetime

from sqlalchemy.orm import Session

import audit
import policies
from audit.decisions import DecisionLog, DecisionLogEntry, record_decision, record_decisions
from crypto.periodic import Periodic
from exchange.trail import Trail

__all__ = [
    "DecisionLogWriter",
    "decision_log_entry",
    "dropped_alert",
    "log_decision",
    "log_decisions",
]

log = logging.getLogger("pdx.platform")

# What a stored entry says as the decision says it, field for field (the others are below).
_SAME_NAMES = tuple(
    f.name
    for f in fields(DecisionLogEntry)
    if f.name in {d.name for d in fields(policies.Decision)}
)


def decision_log_entry(
    decision: policies.Decision, *, request_id: str | None = None
) -> DecisionLogEntry:
    """The decision as `audit` stores it."""
    subject = decision.input.get("subject") if hasattr(decision.input, "get") else None
    subject_id = subject.get("id") if isinstance(subject, dict) else None
    return DecisionLogEntry(
        **{name: getattr(decision, name) for name in _SAME_NAMES},
        bundle_digest=decision.digest,
        subject_id=subject_id if isinstance(subject_id, str) else None,
        request_id=request_id,
    )


def log_decisions(
    session: Session, decisions: Sequence[tuple[policies.Decision, str | None]]
) -> int:
    """Store many (decision, request id) pairs in one INSERT."""
    return record_decisions(
        session, [decision_log_entry(d, request_id=rid) for d, rid in decisions]
    )


def log_decision(
    session: Session, decision: policies.Decision, *, request_id: str | None = None
) -> DecisionLog:
    """Store `decision` (allowed or denied) in `session`'s transaction as a decision log."""
    return record_decision(session, decision_log_entry(decision, request_id=request_id))


DEFAULT_MAX_PENDING = 100_000

DroppedAlert = Callable[[Session, int], None]
"""Records that `n` decision logs were dropped, in the session's transaction."""


class DecisionLogWriter:
    """Buffers decision logs and writes them in one transaction per flush.

    A failed write (a locked, full or unreachable database) keeps the batch and retries
    it at the next flush. What waits is capped at `max_pending` (issue 13: it grew without
    bound): past it the oldest logs are dropped, counted in `dropped` (shown by /readyz)
    and reported by `alert` (an `audit.decisions_dropped` record) in the first write
    that succeeds afterwards.
    """

    def __init__(
        self,
        sessions: Callable[[], Session],
        *,
        interval_s: float = 0.2,
        batch: int = 500,
        max_pending: int = DEFAULT_MAX_PENDING,
        alert: DroppedAlert | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self._sessions = sessions
        self._batch = batch
        self.max_pending = max_pending
        self.alert = alert
        self.dropped = 0
        """Decision logs dropped since start (over the cap while writes failed)."""
        self._unreported = 0
        self._pending: list[tuple[policies.Decision, str | None]] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        """Held through a write: a flush returns only once every log taken before it is
        committed, also those the writer's own thread took a moment earlier."""
        self._ticking = Periodic(
            interval_s, thread="decision-logs", join_timeout_s=None, job=self._flush_logged
        )

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def add(self, decision: policies.Decision, request_id: str | None) -> None:
        with self._lock:
            self._pending.append((decision, request_id))
            self._cap()
            if len(self._pending) >= self._batch:
                self._ticking.wake()

    def _cap(self) -> None:
        """Drop the oldest logs over the cap (called with the lock held)."""
        over = len(self._pending) - self.max_pending
        if over > 0:
            del self._pending[:over]
            self.dropped += over
            self._unreported += over
            log.error("decision logs: %d dropped over the cap of %d", over, self.max_pending)

    def flush(self) -> int:
        """Write what is pending; on return, every log added before the call is stored."""
        with self._flushing:
            return self._flush()

    def _flush(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, []
            unreported = self._unreported
        if not pending and not unreported:
            return 0
        try:
            with self._sessions() as session, session.begin():
                if pending:
                    log_decisions(session, pending)
                if unreported and self.alert is not None:
                    self.alert(session, unreported)
        except Exception:
            # Put the batch back in front of what arrived meanwhile: a failed write (a
            # locked or full database) delays decision logs; only the cap drops them.
            with self._lock:
                self._pending[:0] = pending
                self._cap()
            raise
        with self._lock:
            self._unreported -= unreported
        return len(pending)

    def start(self) -> None:
        self._ticking.start()

    def stop(self) -> None:
        self._ticking.stop()
        self.flush()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # keep logging; the next flush retries what is queued
            log.exception("writing decision logs failed")


def dropped_alert(trail: Trail, clock: Callable[[], datetime]) -> DroppedAlert:
    """An `audit.decisions_dropped` record (audit only: nothing authorised was done)."""

    def alert(session: Session, count: int) -> None:
        trail.record(
            session,
            audit.Subject("platform", None, None, None, None),
            audit.AuditEvent(
                audit.Event.AUDIT_DECISIONS_DROPPED,
                "log",
                audit.Result.FAILURE,
                detail=f"{count} decision logs dropped over the pending cap while writes failed",
            ),
            object_type="decision_log",
            now=clock(),
        )

    return alert
