"""The audit records of authentication (等保 AUD-02: successes are audited, not only failures).

The token endpoint's outcomes, written in the transaction that issues, rotates or
revokes (the gateway knows HTTP; this module knows which event each outcome is).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

import audit
from audit.catalogue import Event

__all__ = [
    "record_person_token_issued",
    "record_refresh",
    "record_token_issued",
    "record_token_revoked",
]


def record_token_issued(
    session: Session, subject: audit.Subject, client_id: str, *, now: datetime
) -> None:
    """A client authenticated with its credentials and got a new login."""
    event = audit.AuditEvent(
        Event.AUTH_TOKEN_ISSUED, "authenticate", audit.Result.SUCCESS, object_id=client_id
    )
    audit.record(session, subject, event, now=now)


def record_refresh(
    session: Session, subject: audit.Subject, client_id: str, *, reused: bool, now: datetime
) -> None:
    """A refresh token was spent: rotated, or reused (the whole family revoked, a denial)."""
    event = audit.AuditEvent(
        Event.AUTH_REFRESH_REUSED if reused else Event.AUTH_TOKEN_REFRESHED,
        "refresh",
        audit.Result.DENY if reused else audit.Result.SUCCESS,
        object_id=client_id,
        detail="refresh token reused: family revoked" if reused else None,
    )
    audit.record(session, subject, event, now=now)


def record_token_revoked(
    session: Session, subject: audit.Subject, client_id: str, *, now: datetime
) -> None:
    """RFC 7009: a client revoked one of its tokens."""
    event = audit.AuditEvent(
        Event.AUTH_TOKEN_REVOKED, "revoke", audit.Result.SUCCESS, object_id=client_id
    )
    audit.record(session, subject, event, now=now)


def record_person_token_issued(
    session: Session, subject: audit.Subject, person_id: str, *, now: datetime
) -> None:
    """A person signed in with login, password and a TOTP code."""
    event = audit.AuditEvent(
        Event.AUTH_PERSON_TOKEN_ISSUED, "authenticate", audit.Result.SUCCESS, object_id=person_id
    )
    audit.record(session, subject, event, now=now)
