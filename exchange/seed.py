"""Demo organisations, their people and clients, created on the first start of a platform."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import pyotp
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import crypto
from exchange.accounts import (
    CLIENT_ISSUER,
    Caller,
    OrgKind,
    Role,
    create_client,
    create_organisation,
)
from exchange.models import Organisation, Person
from exchange.people import (
    ACTIVE,
    INVITATION_TTL,
    _invite,
    invite_first_admin,
    redeem_invitation,
)
from exchange.trail import Trail

# client name → (organisation name, kind, roles). Each client is owned by a person of
# its own (the client name is the person's login); each person is an administrator
# invited by the platform at first start, so the two security administrators are
# independent people (neither created the other) and can run the two-person rule.
DEMO_CLIENTS: dict[str, tuple[str, OrgKind, tuple[Role, ...]]] = {
    "provider-transport": ("Municipal Transport Bureau", OrgKind.PROVIDER, (Role.DATA_PROVIDER,)),
    "provider-health": ("Municipal Health Commission", OrgKind.PROVIDER, (Role.DATA_PROVIDER,)),
    "enterprise-fintech": ("Lakeside Fintech Ltd", OrgKind.ENTERPRISE, (Role.DATA_CONSUMER,)),
    "auditor": ("City Audit Office", OrgKind.AUDITOR, (Role.AUDITOR,)),
    "security-admin": ("Data Security Centre", OrgKind.SECURITY, (Role.SECURITY_ADMIN,)),
    "security-admin-2": ("Data Security Centre", OrgKind.SECURITY, (Role.SECURITY_ADMIN,)),
    "operator-admin": ("Public Data Operations", OrgKind.OPERATOR, (Role.SYSTEM_ADMIN,)),
}


def _seed_person(
    session: Session,
    keystore: crypto.KeyStore,
    org: Organisation,
    login: str,
    *,
    now: datetime,
    trail: Trail,
) -> tuple[Person, dict[str, str]]:
    """A platform-invited administrator of `org`, enrolled and active (seeding only)."""
    if _has_people(session, org):
        code = _second_admin(session, org, login, now, trail)
    else:
        code = invite_first_admin(
            session, None, org_id=org.id, display_name=login, now=now, trail=trail
        ).code
    password = secrets.token_urlsafe(18)
    totp_secret = pyotp.random_base32()
    enrolment = redeem_invitation(
        session,
        keystore,
        code=code,
        login=login,
        password=password,
        now=now,
        trail=trail,
        totp_secret=totp_secret,
    )
    person = session.get(Person, enrolment.person_id)
    assert person is not None
    person.status = ACTIVE  # the platform enrols its demo people itself
    return person, {
        "person_id": person.id,
        "login": login,
        "password": password,
        "totp_secret": totp_secret,
    }


def _has_people(session: Session, org: Organisation) -> bool:
    count = session.scalar(select(func.count()).select_from(Person).where(Person.org_id == org.id))
    return bool(count)


def _second_admin(
    session: Session, org: Organisation, login: str, now: datetime, trail: Trail
) -> str:
    return _invite(
        session,
        None,
        org,
        display_name=login,
        roles=[r.value for r in DEMO_CLIENTS[login][2]],
        org_admin=True,
        now=now,
        trail=trail,
        ttl=INVITATION_TTL,
    ).code


def seed_demo(
    session: Session,
    *,
    now: datetime,
    trail: Trail,
    keystore: crypto.KeyStore,
) -> dict[str, dict[str, Any]] | None:
    """Create the demo organisations, people and clients if the platform has no organisation.

    Returns the credentials to hand to the demo users (secrets appear only here), or
    None when the platform was already initialised.
    """
    if session.scalar(select(func.count()).select_from(Organisation)):
        return None
    orgs: dict[str, Organisation] = {}
    creds: dict[str, dict[str, Any]] = {}
    for client_name, (org_name, kind, roles) in DEMO_CLIENTS.items():
        org = orgs.get(org_name)
        if org is None:
            org, _ = create_organisation(
                session, None, name=org_name, kind=kind.value, now=now, trail=trail
            )
            orgs[org_name] = org
        person, person_creds = _seed_person(
            session, keystore, org, client_name, now=now, trail=trail
        )
        # The organisation's own administrator issues its client (never the operator);
        # auditor organisations issue nothing through the API, so the platform does.
        admin = (
            Caller(
                client_id=person.id,
                org_id=org.id,
                org_kind=kind,
                roles=frozenset(Role(r) for r in person.roles),
                person_id=person.id,
                person_created_by=person.created_by_person,
                org_admin=True,
            )
            if kind in CLIENT_ISSUER
            else None
        )
        issued = create_client(
            session,
            admin,
            org_id=org.id,
            name=client_name,
            roles=list(roles),
            now=now,
            trail=trail,
            owner_person_id=person.id,
        )
        creds[client_name] = {
            "client_id": issued.client_id,
            "client_secret": issued.client_secret,
            "org": org_name,
            "org_id": org.id,
            "kind": kind.value,
            "roles": [r.value for r in roles],
            "person": person_creds,
        }
    return creds
