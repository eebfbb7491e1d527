"""/v1 people: invitations (operator's first admin, an org admin's further people), enrolment."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import audit
import exchange
import exchange.people
from audit.catalogue import Event
from exchange import authn_trail
from exchange import errors as xe
from exchange.timestamps import Timestamp
from gateway.auditing import client_ip
from gateway.pep import Enforce
from gateway.platform import Platform
from gateway.ratelimit import admit, run_check, settled
from gateway.routers import passkeys as passkeys_router
from gateway.routers.organisations import new_account, requested_roles
from gateway.writes import EnrolmentWrite, EnrolmentWriteDep, WriteDep

router = APIRouter(prefix="/v1", tags=["people"])
public = APIRouter(prefix="/v1", tags=["people"])  # enrolment: the invitation code authenticates

REDEEM_PATH = "/invitations/redeem"  # under /v1
CONFIRM_PATH = "/invitations/confirm"


# A person's login (chosen at enrolment, typed at every sign-in) and the name others see.
Login = Annotated[str, Field(min_length=3, max_length=64)]
DisplayName = Annotated[str, Field(min_length=2, max_length=200)]


class FirstAdminInvite(BaseModel):
    display_name: DisplayName


class PersonInvite(BaseModel):
    display_name: DisplayName
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
    login: Login
    password: str = Field(min_length=12, max_length=256)


class Enrolled(BaseModel):
    person_id: str
    org_id: str
    login: str
    totp_secret: str
    provisioning_uri: str
    ledger_index: int | None = None


class Confirm(BaseModel):
    login: Login
    password: str = Field(min_length=1, max_length=256)
    totp: str = Field(min_length=6, max_length=6)


InviteFirstAdmin = Enforce("organisation.create")
InvitePerson = Enforce("account.create", resources=new_account("person"))


def _issued(inv: exchange.people.IssuedInvitation) -> InvitationIssued:
    return InvitationIssued.model_validate(inv, from_attributes=True)


@router.post(
    "/organisations/{org_id}/first-admin-invitation",
    status_code=201,
    dependencies=[Depends(InviteFirstAdmin)],
)
def invite_first_admin(org_id: str, body: FirstAdminInvite, w: WriteDep) -> InvitationIssued:
    """The operator invites a new organisation's first administrator (once, nothing more)."""
    w.failing_as(Event.PERSON_INVITE_FAILED, org_id)
    inv = w.run(exchange.people.invite_first_admin, org_id=org_id, display_name=body.display_name)
    return _issued(inv)


@router.post(
    "/organisations/{org_id}/invitations",
    status_code=201,
    dependencies=[Depends(requested_roles), Depends(InvitePerson)],
)
def invite_person(org_id: str, body: PersonInvite, w: WriteDep) -> InvitationIssued:
    """An organisation's administrator invites another person of that organisation."""
    w.failing_as(Event.PERSON_INVITE_FAILED, org_id)
    inv = w.run(
        exchange.people.invite_person,
        org_id=org_id,
        display_name=body.display_name,
        roles=body.roles,
        org_admin=body.org_admin,
    )
    return _issued(inv)


@public.post(REDEEM_PATH, status_code=201)
def redeem(body: Redeem, w: EnrolmentWriteDep) -> Enrolled:
    """Spend an invitation code: set a login and password, receive the TOTP secret."""
    e = w.failing_as(Event.PERSON_REDEEM_DENIED).run(
        exchange.people.redeem_invitation, code=body.code, login=body.login, password=body.password
    )
    return Enrolled.model_validate(e, from_attributes=True)


class Confirmed(BaseModel):
    person_id: str
    state: str = Field(description="the person's state: `active` once confirmed")


def _confirm_password(w: EnrolmentWrite, body: Confirm) -> str:
    """The password check (scrypt) on a secret-check thread, no transaction open."""
    try:
        return exchange.people.verify_person_password(
            w.platform.session, login=body.login, password=body.password
        )
    except xe.AuthenticationFailed:
        w.request.state.auth_attempt.failed()
        raise


def _confirm(w: EnrolmentWrite, body: Confirm, verified: str) -> Confirmed:
    try:
        person = w.run(
            exchange.people.authenticate_person,
            login=body.login,
            password=body.password,
            totp=body.totp,
            enrolling=True,
            verified_hash=verified,
        )
    except xe.AuthenticationFailed:
        w.request.state.auth_attempt.failed()
        raise
    return Confirmed(person_id=person.id, state=person.status)


@public.post(CONFIRM_PATH)
async def confirm(body: Confirm, request: Request, w: EnrolmentWriteDep) -> Confirmed:
    """The first TOTP code from the authenticator activates the person.

    A password check like a sign-in's: within the address's failure budget, on the
    secret-check threads, outside the write transaction, its 429s answered late.
    """
    w.failing_as(Event.PERSON_CONFIRM_DENIED)
    subject = "person:" + body.login[:64]
    attempt = await admit(request, subject)
    try:
        verified = await run_check(request, subject, partial(_confirm_password, w, body))
        return await settled(request, partial(_confirm, w, body, verified))
    finally:
        attempt.release()  # no-op when a failure spent the slot


def person_password(platform: Platform, request: Request, fields: dict[str, str]) -> str:
    """The person's password check (scrypt), no transaction open; the hash it matched."""
    login = fields.get("username", "")
    try:
        return exchange.people.verify_person_password(
            platform.session, login=login, password=fields.get("password", "")
        )
    except xe.AuthenticationFailed:
        raise passkeys_router.person_denied(request, login) from None


def _person_token(
    platform: Platform, request: Request, fields: dict[str, str], verified: str
) -> JSONResponse:
    now = platform.now()
    login = fields.get("username", "")
    password = fields.get("password", "")
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
            raise passkeys_router.person_denied(request, login) from None
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
    request: Request, platform: Platform, fields: dict[str, str], verified: str
) -> JSONResponse:
    """`grant_type=urn:pdx:params:oauth:grant-type:person`: username, password and totp.

    Or, instead of `totp`, `passkey`: a WebAuthn assertion (JSON) answering the challenge
    from /v1/auth/passkey-options. `verified` is the hash `person_password` matched.
    """
    return await settled(request, partial(_person_token, platform, request, fields, verified))
