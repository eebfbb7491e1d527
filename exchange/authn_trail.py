"""The audit records of authentication (等保 AUD-02: successes are audited, not only failures).

The token endpoint's outcomes, written in the transaction that issues, rotates or
revokes (the gateway knows HTTP; this module knows which event each outcome is).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from sqlalchemy.orm import Session

import audit
from audit.catalogue import Event

__all__ = [
    "record_person_token_issued",
    "record_refresh",
    "record_token_issued",
    "record_token_revoked",
]


def _succeeded(
    session: Session,
    subject: audit.Subject,
    object_id: str,
    *,
    event: Event,
    action: str,
    now: datetime,
) -> None:
    """One successful authentication step, recorded against the client or person it names."""
    entry = audit.AuditEvent(event, action, audit.Result.SUCCESS, object_id=object_id)
    audit.record(session, subject, entry, now=now)


# A client authenticated with its credentials and got a new login.
record_token_issued = partial(_succeeded, event=Event.AUTH_TOKEN_ISSUED, action="authenticate")
# RFC 7009: a client revoked one of its tokens.
record_token_revoked = partial(_succeeded, event=Event.AUTH_TOKEN_REVOKED, action="revoke")
# A person signed in with login, password and a TOTP code.
record_person_token_issued = partial(
    _succeeded, event=Event.AUTH_PERSON_TOKEN_ISSUED, action="authenticate"
)


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
