"""Decision logs: every policy decision, allowed or denied, in OPA's decision-log shape.

One row per decision (docs/compliance.md AUD-10: denials are security events too) with the
input, the result, the policy revision that produced it and when. Audit records carry
the same `decision_id`, so an audited action leads to the decision that allowed it.
Rows are written in the caller's transaction and never updated or deleted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from audit.models import AuditBase, UuidKey
from crypto.rfc3339 import rfc3339

__all__ = [
    "DecisionLog",
    "DecisionLogEntry",
    "get_decision",
    "list_decisions",
    "record_decision",
]


class DecisionLog(AuditBase):
    """A stored decision (OPA decision log fields plus the verdict and request links)."""

    __tablename__ = "audit_decisions"

    decision_id: Mapped[UuidKey]
    ts: Mapped[datetime]
    path: Mapped[str] = mapped_column(String(256))
    input: Mapped[str] = mapped_column(Text)  # JSON
    result: Mapped[str | None] = mapped_column(Text)  # JSON; NULL when undefined
    revision: Mapped[int] = mapped_column(Integer)
    bundle_digest: Mapped[str] = mapped_column(String(64))
    allow: Mapped[bool] = mapped_column(Boolean)
    subject_id: Mapped[str | None] = mapped_column(String(128))
    request_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_audit_decisions_ts", "ts"),
        Index("ix_audit_decisions_subject_id", "subject_id", "ts"),
        Index("ix_audit_decisions_request_id", "request_id"),
    )

    def to_opa(self) -> dict[str, Any]:
        """The row as an OPA decision-log event."""
        event: dict[str, Any] = {
            "decision_id": self.decision_id,
            "path": self.path,
            "input": json.loads(self.input),
            "bundles": {"pdx": {"revision": f"{self.revision}:{self.bundle_digest}"}},
            "timestamp": rfc3339(self.ts),
        }
        if self.result is not None:
            event["result"] = json.loads(self.result)
        return event


@dataclass(frozen=True)
class DecisionLogEntry:
    """A decision to store: plain values, so `audit` needs nothing from `policies`.

    `defined` False means the policy was undefined for the input (stored as NULL).
    """

    decision_id: str
    path: str
    input: Any
    result: Any
    defined: bool
    revision: int
    bundle_digest: str
    timestamp: datetime
    allow: bool
    subject_id: str | None = None
    request_id: str | None = None


def _cut(value: str | None, limit: int) -> str | None:
    return None if value is None else value.replace("\x00", "\ufffd")[:limit]


def _row(entry: DecisionLogEntry) -> dict[str, Any]:
    if entry.timestamp.tzinfo is None:
        raise ValueError("decision timestamps must be timezone-aware (UTC)")
    ts = entry.timestamp.astimezone(UTC)
    return {
        "decision_id": entry.decision_id,
        # Millisecond UTC timestamps, like audit records (等保 2.0).
        "ts": ts.replace(microsecond=ts.microsecond // 1000 * 1000),
        "path": entry.path[:256],
        # json.dumps escapes NUL, so PostgreSQL text accepts whatever the input held.
        "input": json.dumps(entry.input, ensure_ascii=False, default=str),
        "result": (
            json.dumps(entry.result, ensure_ascii=False, default=str) if entry.defined else None
        ),
        "revision": entry.revision,
        "bundle_digest": entry.bundle_digest[:64],
        "allow": entry.allow,
        "subject_id": _cut(entry.subject_id, 128),
        "request_id": _cut(entry.request_id, 64),
    }


def record_decisions(session: Session, entries: Sequence[DecisionLogEntry]) -> int:
    """Add many decisions in one multi-row INSERT (the buffered decision-log writer)."""
    if not entries:
        return 0
    session.execute(insert(DecisionLog), [_row(e) for e in entries])
    return len(entries)


def record_decision(session: Session, entry: DecisionLogEntry) -> DecisionLog:
    """Add the decision to `session`'s transaction (the caller commits it with the action).

    docs/compliance.md AUD-05: the record commits with the action it authorised, or not at all.
    """
    row = DecisionLog(**_row(entry))
    session.add(row)
    return row


def get_decision(session: Session, decision_id: str) -> DecisionLog | None:
    return session.get(DecisionLog, decision_id)


def list_decisions(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    allow: bool | None = None,
    subject_id: str | None = None,
    limit: int = 100,
) -> list[DecisionLog]:
    """Stored decisions, newest first, filtered by time window, verdict and subject."""
    query = select(DecisionLog)
    if since is not None:
        query = query.where(DecisionLog.ts >= since)
    if until is not None:
        query = query.where(DecisionLog.ts < until)
    if allow is not None:
        query = query.where(DecisionLog.allow == allow)
    if subject_id is not None:
        query = query.where(DecisionLog.subject_id == subject_id)
    query = query.order_by(DecisionLog.ts.desc(), DecisionLog.decision_id).limit(limit)
    return list(session.scalars(query))
