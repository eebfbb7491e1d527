"""Decision logs: policy decisions (allowed or denied) buffered and stored in `audit`'s table.

The decision point lives in `policies` and the durable log in `audit`; neither imports the
other, so the conversion between them sits here, at the composition root.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

import policies
from audit.decisions import DecisionLog, DecisionLogEntry, record_decision, record_decisions

__all__ = ["DecisionLogWriter", "decision_log_entry", "log_decision", "log_decisions"]

log = logging.getLogger("pdx.platform")


def decision_log_entry(
    decision: policies.Decision, *, request_id: str | None = None
) -> DecisionLogEntry:
    """The decision as `audit` stores it."""
    subject = decision.input.get("subject") if hasattr(decision.input, "get") else None
    subject_id = subject.get("id") if isinstance(subject, dict) else None
    return DecisionLogEntry(
        decision_id=decision.decision_id,
        path=decision.path,
        input=decision.input,
        result=decision.result,
        defined=decision.defined,
        revision=decision.revision,
        bundle_digest=decision.digest,
        timestamp=decision.timestamp,
        allow=decision.allow,
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


class DecisionLogWriter:
    """Buffers decision logs and writes them in one transaction per flush."""

    def __init__(
        self, sessions: Callable[[], Session], *, interval_s: float = 0.2, batch: int = 500
    ) -> None:
        self._sessions = sessions
        self._interval = interval_s
        self._batch = batch
        self._pending: list[tuple[policies.Decision, str | None]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, decision: policies.Decision, request_id: str | None) -> None:
        with self._lock:
            self._pending.append((decision, request_id))
            if len(self._pending) >= self._batch:
                self._wake.set()

    def flush(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return 0
        try:
            with self._sessions() as session, session.begin():
                log_decisions(session, pending)
        except Exception:
            # Put the batch back in front of what arrived meanwhile: a failed write (a
            # locked or full database) delays decision logs, it does not drop them.
            with self._lock:
                self._pending[:0] = pending
            raise
        return len(pending)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="decision-logs", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._wake.set()
            self._thread.join()
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # keep logging; the next flush retries what is queued
                log.exception("writing decision logs failed")
