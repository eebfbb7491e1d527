"""Client credentials checked outside the write transaction, and the client lifecycle.

Secret verification (scrypt, ~50 ms and 16 MiB) runs with no transaction open: the
token endpoint reads the stored hash, closes that read, verifies, and only then opens
the transaction that issues the token, where `confirm_client` re-reads the client and
refuses if it was deactivated or its secret rotated in between (issue 11: scrypt inside
`BEGIN IMMEDIATE` let a credential flood serialise every write on the platform).

Deactivation and rotation are authorised by the same check that decides who creates an
organisation's clients (`exchange.accounts.require_client_issuer`), and each writes its
ledger entry and audit record in the transaction that makes the change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

import audit
import crypto
from audit.catalogue import Event
from exchange.accounts import _CLIENT_ID, Caller, require_client_issuer
from exchange.errors import AuthenticationFailed, Conflict, NotFound
from exchange.models import Client, Organisation, TokenFamily
from exchange.trail import Trail


@dataclass(frozen=True)
class VerifiedClient:
    """Credentials that verified against `secret_hash` (re-checked by `confirm_client`)."""

    client_id: str
    org_id: str
    secret_hash: str


@dataclass(frozen=True)
class ClientChange:
    """The outcome of a lifecycle operation; `client_secret` only after a rotation."""

    client_id: str
    org_id: str
    active: bool
    ledger_index: int | None
    client_secret: str | None = None


def verify_client_credentials(
    sessions: Callable[[], Session], client_id: str, client_secret: str
) -> VerifiedClient:
    """Check credentials with no transaction held; one opaque failure (RFC 6749 §5.2)."""
    row = None
    if _CLIENT_ID.match(client_id):
        with sessions() as session:
            row = session.execute(
                select(Client.id, Client.org_id, Client.secret_hash, Client.active).where(
                    Client.id == client_id
                )
            ).first()
    if row is None:
        # Same scrypt work as a real check, so timing does not reveal which ids exist.
        crypto.dummy_verify(client_secret)
        raise AuthenticationFailed("invalid client credentials")
    if not crypto.verify_secret(client_secret, row.secret_hash) or not row.active:
        raise AuthenticationFailed("invalid client credentials")
    return VerifiedClient(row.id, row.org_id, row.secret_hash)


def confirm_client(session: Session, verified: VerifiedClient) -> Client:
    """Inside the write transaction: still active, and still the secret that verified."""
    client = session.get(Client, verified.client_id)
    if client is None or not client.active or client.secret_hash != verified.secret_hash:
        raise AuthenticationFailed("invalid client credentials")
    return client


def new_client_secret() -> tuple[str, str]:
    """A fresh secret and its scrypt hash; call before opening the write transaction."""
    secret = crypto.generate_secret()
    return secret, crypto.hash_secret(secret)


def _managed_client(session: Session, caller: Caller, org_id: str, client_id: str) -> Client:
    org = session.get(Organisation, org_id)
    if org is None:
        raise NotFound("no such organisation", org_id=org_id)
    require_client_issuer(caller, org)
    client = session.get(Client, client_id, with_for_update=True)
    if client is None or client.org_id != org.id:
        raise NotFound("no such client in this organisation", client_id=client_id[:64])
    return client


def _revoke_logins(session: Session, client_id: str, now: datetime, reason: str) -> None:
    """Revoke every live login family: its refresh tokens and access tokens stop working."""
    session.execute(
        update(TokenFamily)
        .where(TokenFamily.client_id == client_id, TokenFamily.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )


def _record(
    session: Session,
    trail: Trail,
    caller: Caller,
    event: str,
    action: str,
    client_id: str,
    now: datetime,
) -> int | None:
    receipt = trail.record(
        session,
        caller.subject(),
        audit.AuditEvent(event, action, audit.Result.SUCCESS, object_id=client_id),
        object_type="client",
        now=now,
    )
    return receipt.ledger_index


def deactivate_client(
    session: Session, caller: Caller, *, org_id: str, client_id: str, now: datetime, trail: Trail
) -> ClientChange:
    """Deactivate a client: no new tokens, and its live tokens stop working."""
    client = _managed_client(session, caller, org_id, client_id)
    if client.id == caller.client_id:
        raise Conflict("a client cannot deactivate itself; ask another administrator")
    if not client.active:
        raise Conflict("the client is already deactivated", client_id=client.id)
    client.active = False
    _revoke_logins(session, client.id, now, "client deactivated")
    index = _record(session, trail, caller, Event.CLIENT_DEACTIVATED, "deactivate", client.id, now)
    return ClientChange(client.id, client.org_id, False, index)


def rotate_client_secret(
    session: Session,
    caller: Caller,
    *,
    org_id: str,
    client_id: str,
    secret: tuple[str, str],
    now: datetime,
    trail: Trail,
) -> ClientChange:
    """Replace a client's secret (`secret` from `new_client_secret`); the old one stops working.

    Its logins are revoked too: a rotation usually answers a leak, and tokens obtained
    with the leaked secret must not outlive it.
    """
    client = _managed_client(session, caller, org_id, client_id)
    if not client.active:
        raise Conflict("the client is deactivated", client_id=client.id)
    plaintext, hashed = secret
    client.secret_hash = hashed
    client.secret_issued_by = caller.person_id  # who now knows it (policies/sod.rego)
    _revoke_logins(session, client.id, now, "client secret rotated")
    index = _record(session, trail, caller, Event.CLIENT_SECRET_ROTATED, "rotate", client.id, now)
    return ClientChange(client.id, client.org_id, True, index, client_secret=plaintext)
