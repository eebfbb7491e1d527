"""Organisations, their service clients and client authentication (people: exchange.people)."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

import audit
import crypto
from audit.catalogue import Event
from exchange.errors import (
    AuthenticationFailed,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    SeparationOfDuties,
)
from exchange.first_use import add_unique
from exchange.models import Client, Organisation, Person
from exchange.paging import Slice, Window, keyset
from exchange.trail import Receipt, Trail


class OrgKind(StrEnum):
    PROVIDER = "provider"
    ENTERPRISE = "enterprise"
    AUDITOR = "auditor"
    SECURITY = "security"
    OPERATOR = "operator"


class Role(StrEnum):
    DATA_PROVIDER = "data-provider"
    DATA_CONSUMER = "data-consumer"
    AUDITOR = "auditor"
    SECURITY_ADMIN = "security-admin"
    SYSTEM_ADMIN = "system-admin"


# Which roles a client of each organisation kind may hold.
ROLES_BY_KIND: dict[OrgKind, frozenset[Role]] = {
    OrgKind.PROVIDER: frozenset({Role.DATA_PROVIDER}),
    OrgKind.ENTERPRISE: frozenset({Role.DATA_CONSUMER}),
    OrgKind.AUDITOR: frozenset({Role.AUDITOR}),
    OrgKind.SECURITY: frozenset({Role.SECURITY_ADMIN}),
    OrgKind.OPERATOR: frozenset({Role.SYSTEM_ADMIN}),
}

# Who may create clients and people for an organisation of each kind (see create_client):
# always the organisation's own administrator person holding its role (issue 11: the
# platform operator creates an organisation and its first administrator's invitation,
# and never acts as it). Auditor organisations issue nothing through the API
# (三员分立: the auditor changes nothing); the platform seeds them.
CLIENT_ISSUER: dict[OrgKind, Role] = {
    OrgKind.PROVIDER: Role.DATA_PROVIDER,
    OrgKind.ENTERPRISE: Role.DATA_CONSUMER,
    OrgKind.OPERATOR: Role.SYSTEM_ADMIN,
    OrgKind.SECURITY: Role.SECURITY_ADMIN,
}

# 三员分立 (docs/compliance.md AUD-08): system, security and audit administration are held apart.
SEPARATED_DUTIES = frozenset({Role.SYSTEM_ADMIN, Role.SECURITY_ADMIN, Role.AUDITOR})

_CLIENT_ID = re.compile(r"^[\x21-\x7e]{1,64}$")
_NAME = re.compile(r"^[\w\-. ()\u4e00-\u9fff]{2,200}$")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller of an exchange operation, and the request it came in."""

    client_id: str
    org_id: str
    org_kind: OrgKind
    roles: frozenset[Role]
    ip: str | None = None
    request_id: str | None = None
    decision_id: str | None = None
    # The person behind the request (a person's token, or the owner of the client),
    # who created that person, and whether the person administers the organisation.
    person_id: str | None = None
    person_created_by: str | None = None
    org_admin: bool = False

    def subject(self) -> audit.Subject:
        return audit.Subject(
            subject_id=self.client_id,
            subject_org=self.org_id,
            subject_ip=self.ip,
            request_id=self.request_id,
            decision_id=self.decision_id,
        )

    def bind_decision(self, decision_id: str) -> None:
        """Name the policy decision that authorised this request (audit records cite it)."""
        object.__setattr__(self, "decision_id", decision_id)

    def require(self, role: Role) -> None:
        """Refuse unless the caller holds `role` (the policy issue moves this into Rego)."""
        if role not in self.roles:
            raise Forbidden(f"this operation needs the '{role}' role", required_role=role.value)

    def require_as(self, role: Role, kind: OrgKind, refusal: str) -> None:
        """Refuse unless the caller holds `role` for an organisation of `kind` (`refusal`)."""
        self.require(role)
        if self.org_kind is not kind:
            raise Forbidden(refusal)

    def require_org_admin(self, org: Organisation) -> None:
        """Refuse unless an administrator person of `org` itself stands behind the call."""
        issuer = CLIENT_ISSUER.get(OrgKind(org.kind))
        if issuer is None:
            raise SeparationOfDuties(
                f"accounts of a '{org.kind}' organisation are issued by the platform itself"
            )
        self.require(issuer)
        if self.org_id != org.id or self.person_id is None or not self.org_admin:
            raise SeparationOfDuties(
                "separation of duties: an organisation's clients and people are created only "
                "by its own administrator"
            )


@dataclass(frozen=True)
class IssuedClient:
    """A newly created client; `client_secret` is shown once and stored only hashed."""

    client_id: str
    client_secret: str
    org_id: str
    org_kind: OrgKind
    name: str
    roles: tuple[Role, ...]
    ledger_index: int | None = None


def _check_name(name: str, what: str) -> str:
    name = name.strip()
    if not _NAME.match(name):
        raise InvalidInput(
            f"{what} name must be 2-200 letters, digits, spaces or -._()", field=what
        )
    return name


def create_organisation(
    session: Session,
    caller: Caller | None,
    *,
    name: str,
    kind: str,
    now: datetime,
    trail: Trail,
) -> tuple[Organisation, Receipt]:
    """Create an organisation. `caller` None means the platform itself (first-start seeding)."""
    if caller is not None:
        caller.require(Role.SYSTEM_ADMIN)
    try:
        org_kind = OrgKind(kind)
    except ValueError:
        allowed = ", ".join(k.value for k in OrgKind)
        raise InvalidInput(
            f"unknown organisation kind; use one of: {allowed}", field="kind"
        ) from None
    org = Organisation(
        id=str(uuid.uuid4()), name=_check_name(name, "organisation"), kind=org_kind, created_at=now
    )
    add_unique(session, org, Conflict("an organisation with this name exists", field="name"))
    receipt = record_change(
        session, trail, caller, Event.ORGANISATION_CREATED, "create", "organisation", org.id, now
    )
    return org, receipt


def create_client(
    session: Session,
    caller: Caller | None,
    *,
    org_id: str,
    name: str,
    roles: list[str],
    now: datetime,
    trail: Trail,
    owner_person_id: str | None = None,
) -> IssuedClient:
    """Create a service client with a fresh secret, owned by a person of the organisation.

    Only the organisation's own administrator person (or a client that person owns)
    issues its clients, for itself or another active person of the organisation
    (`owner_person_id`, default the caller's person); the client's roles are a subset
    of its owner's. 三员分立 and issue 11: the system administrator never issues
    credentials for another organisation, so it cannot act as a provider.
    """
    org = session.get(Organisation, org_id)
    if org is None:
        if caller is not None and caller.person_id is None:
            raise SeparationOfDuties("a client must be created by an administrator person")
        raise NotFound("no such organisation", org_id=org_id)
    kind = OrgKind(org.kind)
    if caller is not None:
        require_client_issuer(caller, org)
        owner_person_id = owner_person_id or caller.person_id
    owner = session.get(Person, owner_person_id) if owner_person_id else None
    if owner is None or owner.org_id != org.id or owner.status != "active":
        raise InvalidInput(
            "a client belongs to an active person of its organisation", field="owner_person_id"
        )
    try:
        wanted = tuple(dict.fromkeys(Role(r) for r in roles))
    except ValueError:
        raise InvalidInput("unknown role", field="roles") from None
    if not wanted:
        raise InvalidInput("a client needs at least one role", field="roles")
    not_allowed = [r.value for r in wanted if r not in ROLES_BY_KIND[kind]]
    if not_allowed:
        raise InvalidInput(
            f"role(s) {', '.join(not_allowed)} not allowed for a {kind.value} organisation",
            field="roles",
        )
    if len(SEPARATED_DUTIES.intersection(wanted)) > 1:
        raise InvalidInput("separation of duties: one client may hold only one admin role")
    beyond = [r.value for r in wanted if r.value not in owner.roles]
    if beyond:
        raise InvalidInput(
            f"the owner person does not hold role(s) {', '.join(beyond)}", field="roles"
        )
    secret = crypto.generate_secret()
    client = Client(
        id="pdx-" + secrets.token_hex(8),
        org_id=org.id,
        name=_check_name(name, "client"),
        secret_hash=crypto.hash_secret(secret),
        roles=[r.value for r in wanted],
        active=True,
        created_at=now,
        owner_person_id=owner.id,
        secret_issued_by=caller.person_id if caller is not None else None,
    )
    add_unique(
        session,
        client,
        Conflict("this organisation already has a client with this name", field="name"),
    )
    receipt = record_change(
        session, trail, caller, Event.CLIENT_CREATED, "create", "client", client.id, now
    )
    return IssuedClient(client.id, secret, org.id, kind, client.name, wanted, receipt.ledger_index)


def require_client_issuer(caller: Caller, org: Organisation) -> None:
    """Refuse unless `caller` may manage (create, deactivate, rotate) `org`'s clients.

    The one check for who manages an organisation's clients: `create_client` and the
    client lifecycle (exchange/clients.py) both call it.
    """
    caller.require_org_admin(org)


def authenticate_client(session: Session, client_id: str, client_secret: str) -> Client:
    """Check client credentials; one opaque failure whatever was wrong (RFC 6749 §5.2)."""
    client = session.get(Client, client_id) if _CLIENT_ID.match(client_id) else None
    if client is None:
        # Same scrypt work as a real check, so timing does not reveal which ids exist.
        crypto.dummy_verify(client_secret)
        raise AuthenticationFailed("invalid client credentials")
    if not crypto.verify_secret(client_secret, client.secret_hash) or not client.active:
        raise AuthenticationFailed("invalid client credentials")
    return client


def list_organisations(session: Session, *, window: Window) -> Slice[Organisation]:
    """Every organisation, oldest first by (created_at, id) (`exchange.paging`)."""
    stmt = select(Organisation)
    return keyset(session, stmt, (Organisation.created_at, Organisation.id), window, lambda o: o)


def record_change(
    session: Session,
    trail: Trail,
    caller: Caller | None,
    event_type: str,
    action: str,
    object_type: str,
    obj: str,
    now: datetime,
    org_id: str | None = None,
) -> Receipt:
    """Record a successful account change by `caller`, or by the platform for `org_id`."""
    subject = (
        caller.subject()
        if caller is not None
        else audit.Subject("platform", org_id, None, None, None)
    )
    return trail.record(
        session,
        subject,
        audit.AuditEvent(event_type, action, audit.Result.SUCCESS, object_id=obj),
        object_type=object_type,
        now=now,
    )
