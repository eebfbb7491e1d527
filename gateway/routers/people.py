"""/v1 people: invitations (operator's first admin, an org admin's further people), enrolment."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

import audit
import exchange
import exchange.people
from audit.catalogue import Event
from exchange import authn_trail, resources
from exchange import errors as xe
from exchange.timestamps import Timestamp
from gateway.auditing import client_ip
from gateway.errors import GatewayError
from gateway.pep import Enforce, Target
from gateway.platform import Platform
from gateway.ratelimit import Attempt, Limits
from gateway.routers import passkeys as passkeys_router
from gateway.security import CallerDep, ClockDep, PlatformDep, SessionDep

router = APIRouter(prefix="/v1", tags=["people"])
public = APIRouter(prefix="/v1", tags=["people"])  # enrolment: the invitation code authenticates

REDEEM_PATH = "/invitations/redeem"  # under /v1
CONFIRM_PATH = "/invitations/confirm"


class FirstAdminInvite(BaseModel):
    display_name: str = Field(min_length=2, max_length=200)


class PersonInvite(BaseModel):
    display_name: str = Field(min_length=2, max_length=200)
    roles: list[str] = Field(min_length=1, max_length=5)
    org_admin: bool = False


class InvitationIssued(BaseModel):
    """Returned once: the code is stored only hashed."""

    id: str
    org_id: str
    code: str
    expires_at: Timestamp
    roles: list[str]
    org_admin: bool
    ledger_index: int | None = None


class Redeem(BaseModel):
    code: str = Field(min_length=10, max_length=128)
    login: str = Field(min_length=3, max_length=64)
    password: str = Field(min_length=12, max_length=256)


class Enrolled(BaseModel):
    person_id: str
    org_id: str
    login: str
    totp_secret: str
    provisioning_uri: str
    ledger_index: int | None = None


class Confirm(BaseModel):
    login: str = Field(min_length=3, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    totp: str = Field(min_length=6, max_length=6)


def _invitee(
    request: Request, caller: exchange.Caller, platform: Platform, session: Session
) -> list[Target]:
    roles = getattr(request.state, "requested_roles", None) or []
    org_id = request.path_params["org_id"]
    return [Target(resources.account_resource(session, "person", org_id, roles=roles))]


async def _requested_roles(request: Request) -> None:
    try:
        body = await request.json()
    except ValueError:
        return
    roles = body.get("roles") if isinstance(body, dict) else None
    if isinstance(roles, list) and all(isinstance(r, str) for r in roles):
        request.state.requested_roles = roles[:10]


InviteFirstAdmin = Enforce("organisation.create")
InvitePerson = Enforce("account.create", resources=_invitee)


def _issued(inv: exchange.people.IssuedInvitation) -> InvitationIssued:
    return InvitationIssued(
        id=inv.id,
        org_id=inv.org_id,
        code=inv.code,
        expires_at=inv.expires_at,
        roles=list(inv.roles),
        org_admin=inv.org_admin,
        ledger_index=inv.ledger_index,
    )


@router.post(
    "/organisations/{org_id}/first-admin-invitation",
    status_code=201,
    response_model=InvitationIssued,
    dependencies=[Depends(InviteFirstAdmin)],
)
def invite_first_admin(
    org_id: str,
    body: FirstAdminInvite,
    request: Request,
    caller: CallerDep,
    platform: PlatformDep,
    session: SessionDep,
    now: ClockDep,
) -> InvitationIssued:
    """The operator invites a new organisation's first administrator (once, nothing more)."""
    request.state.audit_event = Event.PERSON_INVITE_FAILED
    request.state.object_id = org_id
    with session.begin():
        inv = exchange.people.invite_first_admin(
            session,
            caller,
            org_id=org_id,
            display_name=body.display_name,
            now=now,
            trail=platform.trail,
        )
    return _issued(inv)


@router.post(
    "/organisations/{org_id}/invitations",
    status_code=201,
    response_model=InvitationIssued,
    dependencies=[Depends(_requested_roles), Depends(InvitePerson)],
)
def invite_person(
    org_id: str,
    body: PersonInvite,
    request: Request,
    caller: CallerDep,
    platform: PlatformDep,
    session: SessionDep,
    now: ClockDep,
) -> InvitationIssued:
    """An organisation's administrator invites another person of that organisation."""
    request.state.audit_event = Event.PERSON_INVITE_FAILED
    request.state.object_id = org_id
    with session.begin():
        inv = exchange.people.invite_person(
            session,
            caller,
            org_id=org_id,
            display_name=body.display_name,
            roles=body.roles,
            org_admin=body.org_admin,
            now=now,
            trail=platform.trail,
        )
    return _issued(inv)


@public.post(REDEEM_PATH, status_code=201, response_model=Enrolled)
def redeem(
    body: Redeem, request: Request, platform: PlatformDep, session: SessionDep, now: ClockDep
) -> Enrolled:
    """Spend an invitation code: set a login and password, receive the TOTP secret."""
    request.state.audit_event = Event.PERSON_REDEEM_DENIED
    with session.begin():
        e = exchange.people.redeem_invitation(
            session,
            platform.keystore,
            code=body.code,
            login=body.login,
            password=body.password,
            now=now,
            trail=platform.trail,
        )
    return Enrolled(
        person_id=e.person_id,
        org_id=e.org_id,
        login=e.login,
        totp_secret=e.totp_secret,
        provisioning_uri=e.provisioning_uri,
        ledger_index=e.ledger_index,
    )


class Confirmed(BaseModel):
    person_id: str
    state: str = Field(description="the person's state: `active` once confirmed")


@public.post(CONFIRM_PATH, response_model=Confirmed)
def confirm(
    body: Confirm, request: Request, platform: PlatformDep, session: SessionDep, now: ClockDep
) -> Confirmed:
    """The first TOTP code from the authenticator activates the person."""
    request.state.audit_event = Event.PERSON_CONFIRM_DENIED
    with session.begin():
        person = exchange.people.confirm_enrolment(
            session,
            platform.keystore,
            login=body.login,
            password=body.password,
            totp=body.totp,
            now=now,
            trail=platform.trail,
        )
        return Confirmed(person_id=person.id, state=person.status)


def _person_denied(request: Request, login: str) -> GatewayError:
    request.state.audit_event = Event.AUTH_PERSON_DENIED
    request.state.object_id = login[:64]
    attempt: Attempt | None = getattr(request.state, "auth_attempt", None)
    if attempt is not None:
        attempt.failed()  # spends the failure slot the attempt holds (gateway/ratelimit.py)
    else:
        limits: Limits = request.app.state.limits
        limits.failed(client_ip(request))  # spends the address's failure budget (issue 11)
    return GatewayError(
        "invalid-grant",
        "Invalid token request",
        "invalid person credentials",
        headers={"Cache-Control": "no-store"},
        error="invalid_grant",
    )


def _person_token(platform: Platform, request: Request, fields: dict[str, str]) -> JSONResponse:
    now = platform.now()
    login = fields.get("username", "")
    password = fields.get("password", "")
    try:
        verified = exchange.people.verify_person_password(
            platform.session, login=login, password=password
        )
    except xe.AuthenticationFailed:
        raise _person_denied(request, login) from None
    with platform.session() as session, session.begin():
        try:
            person = exchange.people.authenticate_person(
                session,
                platform.keystore,
                login=login,
                password=password,
                totp=fields.get("totp", ""),
                now=now,
                verified_hash=verified,
                passkey=fields.get("passkey", ""),
                rp=passkeys_router.relying_party(platform),
                trail=platform.trail,
            )
        except xe.AuthenticationFailed:
            raise _person_denied(request, login) from None
        subject = audit.Subject(
            person.id, person.org_id, client_ip(request), request.state.request_id, None
        )
        authn_trail.record_person_token_issued(session, subject, person.id, now=now)
        person_id, org_id = person.id, person.org_id
    # The person's id is the token's subject (exchange.people.PERSON_PREFIX); no refresh
    # token: a person signs in again with a fresh TOTP code.
    access, expires_in = request.app.state.tokens.issue(client_id=person_id, org_id=org_id, now=now)
    return JSONResponse(
        {"access_token": access, "token_type": "Bearer", "expires_in": expires_in},
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


async def person_token(
    request: Request, platform: Platform, fields: dict[str, str]
) -> JSONResponse:
    """`grant_type=urn:pdx:params:oauth:grant-type:person`: username, password and totp.

    Or, instead of `totp`, `passkey`: a WebAuthn assertion (JSON) answering the challenge
    from /v1/auth/passkey-options.
    """
    return await run_in_threadpool(_person_token, platform, request, fields)
