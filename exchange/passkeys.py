"""Passkeys (WebAuthn) as a person's second factor beside TOTP: challenges and credentials."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, ColumnElement, ForeignKey, LargeBinary, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.types import JSON

import audit
from audit.catalogue import Event
from crypto import passkeys as webauthn
from exchange.accounts import Caller
from exchange.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    NotFound,
    SeparationOfDuties,
)
from exchange.first_use import add_unique
from exchange.models import ExchangeBase, Person
from exchange.paging import Slice, Window, keyset
from exchange.trail import Trail

CHALLENGE_TTL = timedelta(minutes=2)  # the options' timeout (120 s)
REGISTER = "register"
AUTHENTICATE = "authenticate"
MAX_PASSKEYS = 10
_MAX_CREDENTIAL_JSON = 6000


class PersonPasskey(ExchangeBase):
    """A person's WebAuthn credential: its id, COSE public key and signature counter."""

    __tablename__ = "person_passkeys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id"), index=True)
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(BigInteger)
    transports: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]


class PasskeyChallenge(ExchangeBase):
    """A server-made challenge: for one person and one ceremony, expiring, spent once.

    Only its SHA-256 is stored; the authenticator's clientDataJSON carries it back.
    """

    __tablename__ = "passkey_challenges"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("people.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    challenge_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


@dataclass(frozen=True)
class RelyingParty:
    """Who the passkeys are for: the RP id (a domain) and the origins the browser may show."""

    rp_id: str
    origins: tuple[str, ...]
    name: str = "pdx"


@dataclass(frozen=True)
class PasskeyInfo:
    """A stored passkey as the person sees it (never the key itself)."""

    id: str
    credential_id: str
    transports: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    ledger_index: int | None = None


def _hash(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def _info(row: PersonPasskey, ledger_index: int | None = None) -> PasskeyInfo:
    return PasskeyInfo(
        row.id,
        row.credential_id,
        tuple(row.transports),
        row.created_at,
        row.last_used_at,
        ledger_index,
    )


def _new_challenge(
    session: Session,
    person: Person,
    purpose: str,
    now: datetime,
    rand: Callable[[int], bytes],
) -> bytes:
    # Expired challenges are dead weight: a late answer finds none and is refused anyway.
    session.execute(
        delete(PasskeyChallenge)
        .where(PasskeyChallenge.person_id == person.id)
        .where(PasskeyChallenge.expires_at <= now)
    )
    challenge = rand(32)
    session.add(
        PasskeyChallenge(
            id=str(uuid.uuid4()),
            person_id=person.id,
            purpose=purpose,
            challenge_hash=_hash(challenge),
            created_at=now,
            expires_at=now + CHALLENGE_TTL,
            used_at=None,
        )
    )
    session.flush()
    return challenge


def _spend_challenge(
    session: Session, person: Person, credential_json: str, purpose: str, now: datetime
) -> bytes | None:
    """The challenge the credential answers, if it is this person's, unspent and fresh."""
    if len(credential_json) > _MAX_CREDENTIAL_JSON:
        return None
    try:
        challenge = webauthn.challenge_of(credential_json, registration=purpose == REGISTER)
    except webauthn.PasskeyRejected:
        return None
    row = session.scalar(
        select(PasskeyChallenge)
        .where(PasskeyChallenge.challenge_hash == _hash(challenge))
        .with_for_update()
    )
    if (
        row is None
        or row.person_id != person.id
        or row.purpose != purpose
        or row.used_at is not None
        or row.expires_at <= now
    ):
        return None
    row.used_at = now
    return challenge


def signed_in_person(session: Session, caller: Caller, *, lock: bool = False) -> Person:
    """The person behind the caller's own token, never a client the person owns.

    A service client acts for its owner, but never manages the owner's authenticators.
    """
    person = None
    if caller.person_id is not None and caller.client_id == caller.person_id:
        query = select(Person).where(Person.id == caller.person_id)
        person = session.scalar(query.with_for_update() if lock else query)
    if person is None or person.status != "active":
        raise SeparationOfDuties("passkeys are managed by the person, signed in as themselves")
    return person


def _passkeys(session: Session, person_id: str) -> list[PersonPasskey]:
    return list(
        session.scalars(
            select(PersonPasskey)
            .where(PersonPasskey.person_id == person_id)
            .order_by(PersonPasskey.created_at, PersonPasskey.id)
        )
    )


def list_passkeys(session: Session, caller: Caller, *, window: Window) -> Slice[PasskeyInfo]:
    """The signed-in person's passkeys, oldest first."""
    person = signed_in_person(session, caller)
    stmt = select(PersonPasskey).where(PersonPasskey.person_id == person.id)
    order = (PersonPasskey.created_at, PersonPasskey.id)
    return keyset(session, stmt, order, window, _info)


def has_passkey(session: Session, person_id: str) -> bool:
    return bool(_passkeys(session, person_id))


def begin_registration(
    session: Session,
    caller: Caller,
    *,
    rp: RelyingParty,
    now: datetime,
    rand: Callable[[int], bytes] = secrets.token_bytes,
) -> dict[str, object]:
    """Creation options for navigator.credentials.create, with a fresh stored challenge."""
    person = signed_in_person(session, caller)
    existing = _passkeys(session, person.id)
    if len(existing) >= MAX_PASSKEYS:
        raise Conflict(f"a person may hold at most {MAX_PASSKEYS} passkeys")
    challenge = _new_challenge(session, person, REGISTER, now, rand)
    return webauthn.registration_options(
        rp_id=rp.rp_id,
        rp_name=rp.name,
        user_id=person.id.encode("ascii"),
        user_name=person.login,
        display_name=person.display_name,
        challenge=challenge,
        exclude=[r.credential_id for r in existing],
    )


def finish_registration(
    session: Session,
    caller: Caller,
    credential_json: str,
    *,
    rp: RelyingParty,
    now: datetime,
    trail: Trail,
) -> PasskeyInfo:
    """Verify the authenticator's attestation against a spent challenge; store the key."""
    person = signed_in_person(session, caller, lock=True)
    subject = caller.subject()
    challenge = _spend_challenge(session, person, credential_json, REGISTER, now)
    if challenge is None:
        raise InvalidInput("the registration challenge is unknown, spent or expired")
    try:
        key = webauthn.verify_attestation(
            credential_json, challenge=challenge, rp_id=rp.rp_id, origins=list(rp.origins)
        )
    except webauthn.PasskeyRejected as exc:
        raise InvalidInput(f"the passkey did not verify: {exc}") from None
    row = PersonPasskey(
        id=str(uuid.uuid4()),
        person_id=person.id,
        credential_id=key.credential_id,
        public_key=key.public_key,
        sign_count=key.sign_count,
        transports=list(key.transports),
        created_at=now,
        last_used_at=None,
    )
    add_unique(session, row, Conflict("this passkey is already registered"))
    return _record(session, trail, subject, Event.PERSON_PASSKEY_ADDED, "create", row, now)


def begin_authentication(
    session: Session,
    person: Person,
    *,
    rp: RelyingParty,
    now: datetime,
    rand: Callable[[int], bytes] = secrets.token_bytes,
) -> dict[str, object] | None:
    """Request options for navigator.credentials.get; None when the person has no passkey."""
    keys = _passkeys(session, person.id)
    if not keys:
        return None
    challenge = _new_challenge(session, person, AUTHENTICATE, now, rand)
    return webauthn.authentication_options(
        rp_id=rp.rp_id,
        challenge=challenge,
        allow=[(k.credential_id, tuple(k.transports)) for k in keys],
    )


def check_assertion(
    session: Session,
    person: Person,
    credential_json: str,
    *,
    rp: RelyingParty,
    now: datetime,
    trail: Trail,
) -> PasskeyInfo:
    """The passkey second factor: one opaque failure whatever was wrong.

    The challenge must be this person's, unspent and fresh; the credential must be
    this person's; the signature must verify for the RP id and origin; the counter
    must move forward. The use is recorded on the trail in the caller's transaction.
    """
    challenge = _spend_challenge(session, person, credential_json, AUTHENTICATE, now)
    if challenge is None:
        raise AuthenticationFailed("invalid person credentials")
    try:
        credential_id = webauthn.credential_id_of(credential_json)
    except webauthn.PasskeyRejected:
        raise AuthenticationFailed("invalid person credentials") from None
    row = _own_passkey(session, person, PersonPasskey.credential_id == credential_id)
    if row is None:
        raise AuthenticationFailed("invalid person credentials")
    try:
        row.sign_count = webauthn.verify_assertion(
            credential_json,
            challenge=challenge,
            rp_id=rp.rp_id,
            origins=list(rp.origins),
            public_key=row.public_key,
            sign_count=row.sign_count,
        )
    except webauthn.PasskeyRejected:
        raise AuthenticationFailed("invalid person credentials") from None
    row.last_used_at = now
    subject = audit.Subject(person.id, person.org_id, None, None, None)
    return _record(session, trail, subject, Event.PERSON_PASSKEY_USED, "authenticate", row, now)


def remove_passkey(
    session: Session,
    person: Person,
    passkey_id: str,
    *,
    now: datetime,
    trail: Trail,
    subject: audit.Subject,
) -> int | None:
    """Delete one of the person's passkeys (the caller checked a fresh second factor)."""
    row = _own_passkey(session, person, PersonPasskey.id == passkey_id)
    if row is None:
        raise NotFound("no such passkey", passkey_id=passkey_id)
    session.delete(row)
    session.flush()
    return _record(
        session, trail, subject, Event.PERSON_PASSKEY_REMOVED, "delete", row, now
    ).ledger_index


def _own_passkey(
    session: Session, person: Person, match: ColumnElement[bool]
) -> PersonPasskey | None:
    """The passkey of `person` that `match` picks, locked until the transaction ends."""
    return session.scalar(
        select(PersonPasskey)
        .where(match)
        .where(PersonPasskey.person_id == person.id)
        .with_for_update()
    )


def _record(
    session: Session,
    trail: Trail,
    subject: audit.Subject,
    event_type: str,
    action: str,
    row: PersonPasskey,
    now: datetime,
) -> PasskeyInfo:
    """The change's audit record and ledger entry; the passkey as answered, with the index."""
    receipt = trail.record(
        session,
        subject,
        audit.AuditEvent(event_type, action, audit.Result.SUCCESS, object_id=row.id),
        object_type="passkey",
        now=now,
    )
    return _info(row, receipt.ledger_index)
