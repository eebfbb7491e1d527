"""People: invitations, enrolment with a password and TOTP, and person authentication."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import crypto
from audit.catalogue import Event
from exchange import passkeys
from exchange.accounts import (
    ROLES_BY_KIND,
    SEPARATED_DUTIES,
    Caller,
    OrgKind,
    Role,
    _check_name,
    record_change,
)
from exchange.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    InvitationInvalid,
    NotFound,
    SeparationOfDuties,
)
from exchange.first_use import add_unique
from exchange.jobs import open_sealed, seal
from exchange.models import Client, Invitation, Organisation, Person
from exchange.trail import Trail

PERSON_PREFIX = "psn-"  # person ids; a token whose `sub` starts so is a person's
PERSON_GRANT = "urn:pdx:params:oauth:grant-type:person"
INVITATION_TTL = timedelta(days=3)
ACTIVE = "active"
ENROLLING = "enrolling"  # redeemed; the first TOTP code is not confirmed yet

_LOGIN = re.compile(r"^[a-z0-9][a-z0-9._\-]{2,63}$")
_TOTP_CODE = re.compile(r"^[0-9]{6}$")
_MIN_PASSWORD = 12
_MAX_PASSWORD = 256
_TOTP_STEP_S = 30


@dataclass(frozen=True)
class IssuedInvitation:
    """A new invitation; `code` is shown once and stored only as its SHA-256."""

    id: str
    org_id: str
    code: str
    expires_at: datetime
    roles: tuple[str, ...]
    org_admin: bool
    ledger_index: int | None


@dataclass(frozen=True)
class Enrolment:
    """A redeemed invitation: the person and the TOTP secret to load into an authenticator."""

    person_id: str
    org_id: str
    login: str
    totp_secret: str
    provisioning_uri: str
    ledger_index: int | None


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def _totp_ref(person_id: str) -> str:
    return f"person:{person_id}:totp"


def _invite(
    session: Session,
    caller: Caller | None,
    org: Organisation,
    *,
    display_name: str,
    roles: list[str],
    org_admin: bool,
    now: datetime,
    trail: Trail,
    ttl: timedelta,
) -> IssuedInvitation:
    kind = OrgKind(org.kind)
    try:
        wanted = tuple(dict.fromkeys(Role(r).value for r in roles))
    except ValueError:
        raise InvalidInput("unknown role", field="roles") from None
    if not wanted:
        raise InvalidInput("a person needs at least one role", field="roles")
    not_allowed = [r for r in wanted if Role(r) not in ROLES_BY_KIND[kind]]
    if not_allowed:
        raise InvalidInput(
            f"role(s) {', '.join(not_allowed)} not allowed for a {kind.value} organisation",
            field="roles",
        )
    if len(SEPARATED_DUTIES.intersection(Role(r) for r in wanted)) > 1:
        raise InvalidInput("separation of duties: one person may hold only one admin role")
    code = secrets.token_urlsafe(32)
    invitation = Invitation(
        id=str(uuid.uuid4()),
        org_id=org.id,
        code_hash=_code_hash(code),
        display_name=_check_name(display_name, "person"),
        roles=list(wanted),
        org_admin=org_admin,
        invited_by_person=caller.person_id if caller is not None else None,
        invited_by=caller.client_id if caller is not None else "platform",
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(invitation)
    session.flush()
    receipt = record_change(
        session, trail, caller, Event.PERSON_INVITED, "invite", "person", invitation.id, now, org.id
    )
    return IssuedInvitation(
        invitation.id,
        org.id,
        code,
        invitation.expires_at,
        wanted,
        org_admin,
        receipt.ledger_index,
    )


def invite_first_admin(
    session: Session,
    caller: Caller | None,
    *,
    org_id: str,
    display_name: str,
    now: datetime,
    trail: Trail,
    ttl: timedelta = INVITATION_TTL,
) -> IssuedInvitation:
    """The platform operator invites an organisation's first administrator, and only that.

    Refused once the organisation has a person: from then on its own administrators
    invite its people (the operator never acts as the organisation).
    """
    if caller is not None:
        caller.require(Role.SYSTEM_ADMIN)
    org = session.get(Organisation, org_id)
    if org is None:
        raise NotFound("no such organisation", org_id=org_id)
    kind = OrgKind(org.kind)
    if kind is OrgKind.OPERATOR and caller is not None:
        raise SeparationOfDuties("the operator's own people are invited by its administrators")
    has_people = session.scalar(
        select(func.count()).select_from(Person).where(Person.org_id == org.id)
    )
    if has_people:
        raise SeparationOfDuties(
            "this organisation has people: its own administrators invite further ones"
        )
    (role,) = ROLES_BY_KIND[kind]
    return _invite(
        session,
        caller,
        org,
        display_name=display_name,
        roles=[role.value],
        org_admin=True,
        now=now,
        trail=trail,
        ttl=ttl,
    )


def invite_person(
    session: Session,
    caller: Caller,
    *,
    org_id: str,
    display_name: str,
    roles: list[str],
    org_admin: bool,
    now: datetime,
    trail: Trail,
    ttl: timedelta = INVITATION_TTL,
) -> IssuedInvitation:
    """An organisation's administrator person invites another person of the same org."""
    org = session.get(Organisation, org_id)
    if org is None:
        raise SeparationOfDuties(
            "an organisation's people are invited only by its own administrator"
        )
    caller.require_org_admin(org)
    return _invite(
        session,
        caller,
        org,
        display_name=display_name,
        roles=roles,
        org_admin=org_admin,
        now=now,
        trail=trail,
        ttl=ttl,
    )


def redeem_invitation(
    session: Session,
    keystore: crypto.KeyStore,
    *,
    code: str,
    login: str,
    password: str,
    now: datetime,
    trail: Trail,
    totp_secret: str | None = None,
) -> Enrolment:
    """Spend an invitation: create the person (enrolling) with a password and a TOTP secret.

    One opaque refusal whether the code is unknown, expired or already used. The row
    is locked, so two concurrent redemptions cannot both succeed.
    """
    invitation = session.scalar(
        select(Invitation).where(Invitation.code_hash == _code_hash(code)).with_for_update()
    )
    if invitation is None or invitation.redeemed_at is not None or invitation.expires_at <= now:
        raise InvitationInvalid("the invitation is unknown, expired or already used")
    login = login.strip().lower()
    if not _LOGIN.match(login):
        raise InvalidInput("login must be 3-64 of a-z, 0-9, '.', '_' or '-'", field="login")
    if not _MIN_PASSWORD <= len(password) <= _MAX_PASSWORD:
        raise InvalidInput(
            f"password must be {_MIN_PASSWORD}-{_MAX_PASSWORD} characters", field="password"
        )
    secret = totp_secret or pyotp.random_base32()
    person_id = PERSON_PREFIX + secrets.token_hex(8)
    ref = _totp_ref(person_id)
    key = keystore.new_data_key(session, owner_org=invitation.org_id, object_ref=ref, now=now)
    person = Person(
        id=person_id,
        org_id=invitation.org_id,
        display_name=invitation.display_name,
        login=login,
        password_hash=crypto.hash_secret(password),
        totp_key_id=key.id,
        totp_sealed=seal(key, secret.encode("ascii"), ref.encode()),
        totp_last_step=None,
        roles=list(invitation.roles),
        org_admin=invitation.org_admin,
        status=ENROLLING,
        created_by_person=invitation.invited_by_person,
        invited_by=invitation.invited_by,
        created_at=now,
    )
    add_unique(session, person, Conflict("this login is taken", field="login"))
    invitation.redeemed_at = now
    invitation.person_id = person.id
    receipt = record_change(
        session, trail, None, Event.PERSON_ENROLLED, "create", "person", person.id, now,
        invitation.org_id,
    )  # fmt: skip
    uri = pyotp.TOTP(secret).provisioning_uri(name=login, issuer_name="pdx")
    return Enrolment(person.id, person.org_id, login, secret, uri, receipt.ledger_index)


def _check_totp(
    session: Session, keystore: crypto.KeyStore, person: Person, code: str, now: datetime
) -> bool:
    """RFC 6238 with one step of clock drift; a step at or before the last used is refused."""
    if not _TOTP_CODE.match(code):
        return False
    ref = _totp_ref(person.id)
    key = keystore.data_key(session, person.totp_key_id, object_ref=ref)
    secret = open_sealed(key, person.totp_sealed, ref.encode()).decode("ascii")
    totp = pyotp.TOTP(secret)
    step = int(now.timestamp()) // _TOTP_STEP_S
    for candidate in (step - 1, step, step + 1):
        # Constant-time compare of each candidate (pyotp's verify uses compare_digest too).
        if hmac.compare_digest(totp.at(candidate * _TOTP_STEP_S), code):
            if person.totp_last_step is not None and candidate <= person.totp_last_step:
                return False  # RFC 6238 §5.2: a code is accepted once
            person.totp_last_step = candidate
            return True
    return False


def authenticate_person(
    session: Session,
    keystore: crypto.KeyStore,
    *,
    login: str,
    password: str,
    totp: str,
    now: datetime,
    enrolling: bool = False,
    verified_hash: str | None = None,
    passkey: str = "",
    rp: passkeys.RelyingParty | None = None,
    trail: Trail | None = None,
) -> Person:
    """Password and TOTP (or a passkey); one opaque failure whatever was wrong.

    With `passkey` (a WebAuthn assertion as JSON, answering a challenge from
    `passkey_challenge`) the passkey is the second factor instead of the TOTP code;
    its use is recorded on `trail`. The password stays the first factor.

    `enrolling` accepts (only) a person whose first code is not confirmed yet: the first
    valid TOTP code proves the authenticator works, and the person is activated (recorded
    on `trail`). The caller commits: the used TOTP step is remembered. With
    `verified_hash` (from `verify_person_password`, run before the transaction) the
    password is not checked again, only that it has not changed since.
    """
    if enrolling and trail is None:
        raise ValueError("an enrolment is confirmed on a trail")
    person = session.scalar(
        select(Person).where(Person.login == login.strip().lower()).with_for_update()
    )
    if person is None:
        if verified_hash is None:
            crypto.dummy_verify(password)  # same scrypt work: timing does not reveal logins
        raise AuthenticationFailed("invalid person credentials")
    wanted = ENROLLING if enrolling else ACTIVE
    if verified_hash is not None:
        password_ok = hmac.compare_digest(verified_hash, person.password_hash)
    else:
        password_ok = crypto.verify_secret(password, person.password_hash)
    if not password_ok or person.status != wanted:
        raise AuthenticationFailed("invalid person credentials")
    if passkey and not enrolling:
        if rp is None or trail is None:
            raise AuthenticationFailed("invalid person credentials")
        passkeys.check_assertion(session, person, passkey, rp=rp, now=now, trail=trail)
    elif not _check_totp(session, keystore, person, totp, now):
        raise AuthenticationFailed("invalid person credentials")
    if enrolling:
        assert trail is not None  # checked first
        person.status = ACTIVE
        record_change(
            session, trail, None, Event.PERSON_ACTIVATED, "update", "person", person.id, now,
            person.org_id,
        )  # fmt: skip
    return person


def verify_person_password(sessions: Callable[[], Session], *, login: str, password: str) -> str:
    """The password check (scrypt) with no transaction open; the hash it matched.

    Pass the result to `authenticate_person(verified_hash=...)` inside the write
    transaction, so scrypt never holds the database's write lock (issue 11).
    """
    with sessions() as session:
        stored = session.scalar(
            select(Person.password_hash).where(Person.login == login.strip().lower())
        )
    if stored is None:
        crypto.dummy_verify(password)  # same scrypt work: timing does not reveal logins
        raise AuthenticationFailed("invalid person credentials")
    if not crypto.verify_secret(password, stored):
        raise AuthenticationFailed("invalid person credentials")
    return stored


def passkey_challenge(
    session: Session, *, verified_hash: str, login: str, rp: passkeys.RelyingParty, now: datetime
) -> dict[str, object] | None:
    """After the password (checked by `verify_person_password`): the passkey options.

    None when the person has no passkey (sign in with TOTP). The caller commits: the
    challenge is stored, single use, for this person only.
    """
    person = session.scalar(select(Person).where(Person.login == login.strip().lower()))
    if (
        person is None
        or person.status != ACTIVE
        or not hmac.compare_digest(verified_hash, person.password_hash)
    ):
        raise AuthenticationFailed("invalid person credentials")
    return passkeys.begin_authentication(session, person, rp=rp, now=now)


def remove_passkey(
    session: Session,
    keystore: crypto.KeyStore,
    caller: Caller,
    passkey_id: str,
    *,
    totp: str,
    passkey: str,
    rp: passkeys.RelyingParty,
    now: datetime,
    trail: Trail,
) -> int | None:
    """Remove one of the caller's passkeys, after a fresh second factor (TOTP or passkey)."""
    person = passkeys.signed_in_person(session, caller, lock=True)
    if passkey:
        passkeys.check_assertion(session, person, passkey, rp=rp, now=now, trail=trail)
    elif not _check_totp(session, keystore, person, totp, now):
        raise AuthenticationFailed("a fresh second factor is needed to remove a passkey")
    return passkeys.remove_passkey(
        session, person, passkey_id, now=now, trail=trail, subject=caller.subject()
    )


def person_caller_fields(session: Session, person_id: str | None) -> tuple[str | None, bool]:
    """(who created the person, whether they administer their org) for a Caller."""
    if person_id is None:
        return None, False
    person = session.get(Person, person_id)
    if person is None or person.status != ACTIVE:
        return None, False
    return person.created_by_person, bool(person.org_admin)


# How many invitations back a person's lineage is walked. A deeper chain is not
# "complete", and the two-person rule refuses it rather than guess (policies/sod.rego).
MAX_LINEAGE = 32


@dataclass(frozen=True)
class Lineage:
    """Who invited a person, who invited them, and so on: nearest first, bounded.

    `complete` is False when the walk stopped at `MAX_LINEAGE` with more above it. A
    cycle (which invitations cannot make, but a restored database might hold) ends the
    walk at the first person seen twice, so it always ends.
    """

    person_id: str
    ancestors: tuple[str, ...]
    complete: bool


def lineage(session: Session, person_id: str) -> Lineage:
    """The chain of `created_by_person` above `person_id` (see `Lineage`)."""
    seen = {person_id}
    ancestors: list[str] = []
    creator = session.scalar(select(Person.created_by_person).where(Person.id == person_id))
    while creator is not None and creator not in seen:
        if len(ancestors) == MAX_LINEAGE:
            return Lineage(person_id, tuple(ancestors), complete=False)
        ancestors.append(creator)
        seen.add(creator)
        creator = session.scalar(select(Person.created_by_person).where(Person.id == creator))
    return Lineage(person_id, tuple(ancestors), complete=True)


def _controllers(session: Session, person: str, client: str | None) -> list[Lineage]:
    """The lineages behind one half: its person's, and its client's secret issuer's."""
    walks = [lineage(session, person)]
    issuer = (
        session.scalar(select(Client.secret_issued_by).where(Client.id == client))
        if client is not None
        else None
    )
    if issuer is not None and issuer != person:
        above = lineage(session, issuer)
        walks.append(Lineage(issuer, (issuer, *above.ancestors), above.complete))
    return walks


def dual_control_lineages(
    session: Session,
    *,
    requester: str | None,
    approver: str | None,
    requester_client: str | None = None,
    approver_client: str | None = None,
) -> dict[str, object]:
    """What policies/sod.rego needs to keep a two-person action out of one lineage.

    Each half's "lineage" is everyone above its person, and, when it acts through a
    client whose secret someone else issued or rotated (and so has seen), that person
    and everyone above them. Whether every walk reached the top goes with it; a
    missing person has no lineage (the policy refuses a half without one on its own).
    """
    halves = {
        "requested_by_lineage": (requester, requester_client),
        "approver_lineage": (approver, approver_client),
    }
    out: dict[str, object] = {"approver_person": approver}
    complete = True
    for name, (person, client) in halves.items():
        walks = _controllers(session, person, client) if person is not None else []
        out[name] = list(dict.fromkeys(p for w in walks for p in w.ancestors))
        complete = complete and all(w.complete for w in walks)
    out["lineage_complete"] = complete
    return out
