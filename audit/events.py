"""Audit events: the record schema callers fill in and the one function that stores it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit.models import AuditRecord


class Result(StrEnum):
    """Outcome of an audited action (COMPLIANCE.md §5 `result`)."""

    SUCCESS = "success"
    FAILURE = "failure"
    DENY = "deny"


@dataclass(frozen=True)
class Subject:
    """Who acted, from where, under which request and decision."""

    subject_id: str | None
    subject_org: str | None
    subject_ip: str | None
    request_id: str | None
    decision_id: str | None


@dataclass(frozen=True)
class AuditEvent:
    """One audited action. `event_type` is a stable dotted name (`dataset.registered`)."""

    event_type: str
    action: str
    result: Result
    object_id: str | None = None
    purpose: str | None = None
    data_level: str | None = None
    detail: str | None = None


def record(session: Session, subject: Subject, event: AuditEvent, *, now: datetime) -> AuditRecord:
    """Add an audit record to `session`'s transaction.

    The caller owns the transaction: the record commits with the change it describes
    or not at all (COMPLIANCE.md §5: an audit failure blocks the action).
    """
    if now.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware (UTC)")
    row = AuditRecord(
        id=str(uuid.uuid4()),
        # 等保 requires millisecond UTC timestamps; truncate so every backend agrees.
        ts=now.astimezone(UTC).replace(microsecond=now.microsecond // 1000 * 1000),
        subject_id=subject.subject_id,
        subject_org=subject.subject_org,
        subject_ip=subject.subject_ip,
        object_id=event.object_id,
        action=event.action,
        result=event.result.value,
        event_type=event.event_type,
        purpose=event.purpose,
        data_level=event.data_level,
        request_id=subject.request_id,
        decision_id=subject.decision_id,
        detail=event.detail[:512] if event.detail else None,
    )
    session.add(row)
    return row


def records_for_request(session: Session, request_id: str) -> list[AuditRecord]:
    """All audit records written under one request id, oldest first."""
    stmt = select(AuditRecord).where(AuditRecord.request_id == request_id).order_by(AuditRecord.ts)
    return list(session.scalars(stmt))
