"""Audit events: the record schema callers fill in and the one function that stores it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy.orm import Session

from audit.catalogue import Event, RecordType
from audit.models import AuditRecord

__all__ = ["AuditEvent", "Event", "RecordType", "Result", "Subject", "record"]


class Result(StrEnum):
    """Outcome of an audited action (docs/compliance.md AUD-01 `result`)."""

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
    """One audited action. `event_type` is a stable dotted name from `Event`.

    `Event` is a `StrEnum`, so its members are the very strings stored in existing rows;
    a plain `str` is still accepted for the names built at run time (`<action>.denied`).
    """

    event_type: Event | str
    action: str
    result: Result
    object_id: str | None = None
    purpose: str | None = None
    data_level: str | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        # Store and hash the plain string, exactly as before the enum existed.
        object.__setattr__(self, "event_type", str(self.event_type))


def _clean(value: str | None, limit: int) -> str | None:
    """Text safe for every backend: NUL replaced (PostgreSQL text refuses it), length cut.

    An audit record must never fail on what an attacker put in a request.
    """
    if value is None:
        return None
    return value.replace("\x00", "\ufffd")[:limit]


def record(session: Session, subject: Subject, event: AuditEvent, *, now: datetime) -> AuditRecord:
    """Add an audit record to `session`'s transaction.

    The caller owns the transaction: the record commits with the change it describes
    or not at all (docs/compliance.md AUD-05: an audit failure blocks the action).
    """
    if now.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware (UTC)")
    row = AuditRecord(
        id=str(uuid.uuid4()),
        # 等保 requires millisecond UTC timestamps; truncate so every backend agrees.
        ts=now.astimezone(UTC).replace(microsecond=now.microsecond // 1000 * 1000),
        subject_id=_clean(subject.subject_id, 128),
        subject_org=_clean(subject.subject_org, 36),
        subject_ip=_clean(subject.subject_ip, 64),
        object_id=_clean(event.object_id, 128),
        action=_clean(event.action, 64) or "",
        result=event.result.value,
        event_type=event.event_type,
        purpose=_clean(event.purpose, 256),
        data_level=event.data_level,
        request_id=_clean(subject.request_id, 64),
        decision_id=_clean(subject.decision_id, 64),
        detail=_clean(event.detail, 512),
    )
    session.add(row)
    return row
