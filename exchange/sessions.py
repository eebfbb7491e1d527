"""Refresh-token families: rotate on use, and a reused token revokes its whole family.

A refresh token is `pdxr_` + 32 random bytes (base64url); only its SHA-256 is stored.
Each use returns a new token in the same family and marks the old one used. Seeing a
used token again means it was copied (OAuth 2.0 Security BCP §4.14): the family is
revoked, so both the thief's and the owner's tokens die, access tokens included.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from exchange.errors import InvalidGrant
from exchange.models import Client, RefreshToken, RevokedToken, TokenFamily

PREFIX = "pdxr_"


@dataclass(frozen=True)
class IssuedRefresh:
    token: str
    family_id: str
    expires_at: datetime


@dataclass(frozen=True)
class Rotation:
    """Outcome of presenting a refresh token: a new one, or the reuse that revoked all."""

    issued: IssuedRefresh | None
    client: Client | None
    reused: bool = False


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_token(session: Session, family: TokenFamily, now: datetime) -> IssuedRefresh:
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(RefreshToken(token_hash=_hash(token), family_id=family.id, issued_at=now))
    return IssuedRefresh(token, family.id, family.expires_at)


def start_family(
    session: Session, client: Client, *, now: datetime, ttl: timedelta, cnf_x5t: str | None
) -> IssuedRefresh:
    """A new family (one per client-credentials login) and its first refresh token."""
    family = TokenFamily(
        id=str(uuid.uuid4()),
        client_id=client.id,
        created_at=now,
        expires_at=now + ttl,
        cnf_x5t=cnf_x5t,
    )
    session.add(family)
    session.flush()  # the family row first: refresh tokens reference it
    return _new_token(session, family, now)


def rotate(
    session: Session, token: str, *, client_id: str, now: datetime, cnf_x5t: str | None
) -> Rotation:
    """Spend `token` and return its successor; on reuse revoke the family (caller commits)."""
    row = session.get(RefreshToken, _hash(token)) if token.startswith(PREFIX) else None
    if row is None:
        raise InvalidGrant("unknown refresh token")
    family = session.get(TokenFamily, row.family_id, with_for_update=True)
    assert family is not None
    if family.client_id != client_id:
        raise InvalidGrant("the refresh token belongs to another client")
    if family.revoked_at is not None:
        raise InvalidGrant("the refresh token's family is revoked")
    if family.expires_at <= now:
        raise InvalidGrant("the refresh token expired")
    if family.cnf_x5t is not None and family.cnf_x5t != cnf_x5t:
        raise InvalidGrant("the refresh token is bound to another client certificate")
    if row.used_at is not None:
        family.revoked_at = now
        family.revoked_reason = "refresh-token-reuse"
        return Rotation(None, None, reused=True)
    row.used_at = now
    client = session.get(Client, family.client_id)
    if client is None or not client.active:
        raise InvalidGrant("the client is not active")
    return Rotation(_new_token(session, family, now), client)


def revoke_refresh(session: Session, token: str, *, client_id: str, now: datetime) -> bool:
    """RFC 7009 for a refresh token: revoke its family. False if not this client's token."""
    row = session.get(RefreshToken, _hash(token)) if token.startswith(PREFIX) else None
    if row is None:
        return False
    family = session.get(TokenFamily, row.family_id)
    if family is None or family.client_id != client_id:
        return False
    if family.revoked_at is None:
        family.revoked_at = now
        family.revoked_reason = "revoked-by-client"
    return True


def revoke_access(
    session: Session, *, jti: str, client_id: str, expires_at: datetime, now: datetime
) -> None:
    """Put an access token on the revocation list until it would have expired."""
    if session.get(RevokedToken, jti) is None:
        session.add(
            RevokedToken(jti=jti, client_id=client_id, expires_at=expires_at, revoked_at=now)
        )
    # Entries past expiry can go: an expired token fails on its own.
    session.execute(delete(RevokedToken).where(RevokedToken.expires_at < now))
