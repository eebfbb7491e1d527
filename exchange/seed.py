"""Demo organisations and clients created on the first start of an embedded platform."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange.accounts import OrgKind, Role, create_client, create_organisation
from exchange.models import Organisation
from exchange.trail import Trail

# client name → (organisation name, kind, roles)
DEMO_CLIENTS: dict[str, tuple[str, OrgKind, tuple[Role, ...]]] = {
    "provider-transport": ("Municipal Transport Bureau", OrgKind.PROVIDER, (Role.DATA_PROVIDER,)),
    "provider-health": ("Municipal Health Commission", OrgKind.PROVIDER, (Role.DATA_PROVIDER,)),
    "enterprise-fintech": ("Lakeside Fintech Ltd", OrgKind.ENTERPRISE, (Role.DATA_CONSUMER,)),
    "auditor": ("City Audit Office", OrgKind.AUDITOR, (Role.AUDITOR,)),
    "security-admin": ("Data Security Centre", OrgKind.SECURITY, (Role.SECURITY_ADMIN,)),
    "operator-admin": ("Public Data Operations", OrgKind.OPERATOR, (Role.SYSTEM_ADMIN,)),
}


def seed_demo(session: Session, *, now: datetime, trail: Trail) -> dict[str, dict[str, Any]] | None:
    """Create the demo organisations and clients if the platform has no organisation yet.

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
        issued = create_client(
            session, None, org_id=org.id, name=client_name, roles=list(roles), now=now, trail=trail
        )
        creds[client_name] = {
            "client_id": issued.client_id,
            "client_secret": issued.client_secret,
            "org": org_name,
            "org_id": org.id,
            "kind": kind.value,
            "roles": [r.value for r in roles],
        }
    return creds
