"""/v1 passkeys (WebAuthn): a person enrols, lists and removes them; sign-in options."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import exchange.people
from audit.catalogue import Event
from exchange import errors as xe
from exchange import passkeys
from exchange.timestamps import Timestamp
from gateway.auditing import client_ip
from gateway.errors import GatewayError
from gateway.pagination import Page, PagingDep
from gateway.pep import Enforce
from gateway.platform import Platform
from gateway.ratelimit import Attempt, Limits, admit, run_check, settled
from gateway.security import CallerDep, ClockDep, PlatformDep, SessionDep
from gateway.writes import WriteDep

public = APIRouter(prefix="/v1", tags=["people"])  # the password authenticates
# A person's own second factors: the decision point allows every role (the auditor too:
# policies/sod.rego); the domain acts only on the signed-in person's own rows.
SecondFactor = Enforce("account.second_factor")
router = APIRouter(prefix="/v1/me/passkeys", tags=["people"], dependencies=[Depends(SecondFactor)])

OPTIONS_PATH = "/v1/auth/passkey-options"


def relying_party(platform: Platform) -> passkeys.RelyingParty:
    """The RP id and origins from settings (PDX_WEBAUTHN_RP_ID, PDX_WEBAUTHN_ORIGINS)."""
    s = platform.settings
    return passkeys.RelyingParty(rp_id=s.webauthn_rp_id, origins=s.webauthn_origin_list)


class PasskeyOut(BaseModel):
    id: str
    credential_id: str = Field(description="base64url, as the authenticator names it")
    transports: list[str]
    created_at: Timestamp
    last_used_at: Timestamp | None = None
    ledger_index: int | None = None


class Ceremony(BaseModel):
    """Options for navigator.credentials.create/get (WebAuthn JSON, base64url fields)."""

    options: dict[str, Any] | None = Field(
        description="null at sign-in when the person has no passkey: use TOTP"
    )


class CredentialIn(BaseModel):
    credential: dict[str, Any] = Field(description="PublicKeyCredential.toJSON()")


class Removal(BaseModel):
    """A fresh second factor: a TOTP code, or an assertion answering a sign-in challenge."""

    totp: str = Field("", max_length=6)
    passkey: dict[str, Any] | None = None


class PasswordIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


def _out(info: passkeys.PasskeyInfo) -> PasskeyOut:
    return PasskeyOut.model_validate(info, from_attributes=True)


def person_denied(request: Request, login: str) -> GatewayError:
    """A person's sign-in refused: audited, and it spends the address's failure budget."""
    request.state.audit_event = Event.AUTH_PERSON_DENIED
    request.state.object_id = login[:64]
    attempt: Attempt | None = getattr(request.state, "auth_attempt", None)
    if attempt is not None:
        attempt.failed()  # spends the failure slot the attempt holds (gateway/ratelimit.py)
    else:
        limits: Limits = request.app.state.limits
        limits.login_failed(client_ip(request))
    return GatewayError(
        "invalid-grant",
        "Invalid token request",
        "invalid person credentials",
        headers={"Cache-Control": "no-store"},
        error="invalid_grant",
    )


def _password(platform: Platform, request: Request, body: PasswordIn) -> str:
    """The password check (scrypt) on a secret-check thread, no transaction open."""
    try:
        return exchange.people.verify_person_password(
            platform.session, login=body.username, password=body.password
        )
    except xe.AuthenticationFailed:
        raise person_denied(request, body.username) from None


def _signin_options(
    platform: Platform, request: Request, body: PasswordIn, verified: str
) -> JSONResponse:
    try:
        with platform.session() as session, session.begin():
            options = exchange.people.passkey_challenge(
                session,
                verified_hash=verified,
                login=body.username,
                rp=relying_party(platform),
                now=platform.now(),
            )
    except xe.AuthenticationFailed:
        raise person_denied(request, body.username) from None
    return JSONResponse({"options": options}, headers={"Cache-Control": "no-store"})


@public.post(OPTIONS_PATH.removeprefix("/v1"), response_model=Ceremony)
async def signin_options(body: PasswordIn, request: Request, platform: PlatformDep) -> JSONResponse:
    """After the password, a challenge for the person's passkeys (null: none, use TOTP).

    Answer it with `grant_type=urn:pdx:params:oauth:grant-type:person`, `username`,
    `password` and `passkey` (the assertion's JSON) at /v1/auth/token.
    """
    subject = "person:" + body.username[:64]
    attempt = await admit(request, subject)
    try:
        # Holds a failure slot while the password is checked (no check-then-count race).
        verified = await run_check(request, subject, partial(_password, platform, request, body))
        return await settled(request, partial(_signin_options, platform, request, body, verified))
    finally:
        attempt.release()  # no-op when a failure spent the slot


@router.get("")
def list_passkeys(caller: CallerDep, session: SessionDep, paging: PagingDep) -> Page[PasskeyOut]:
    """The signed-in person's passkeys, oldest first."""
    return paging.page_as(passkeys.list_passkeys(session, caller, window=paging.window), _out)


@router.post("/options")
def registration_options(
    caller: CallerDep, platform: PlatformDep, session: SessionDep, now: ClockDep
) -> Ceremony:
    """Creation options with a fresh challenge (single use, two minutes)."""
    with session.begin():
        options = passkeys.begin_registration(session, caller, rp=relying_party(platform), now=now)
    return Ceremony(options=options)


@router.post("", status_code=201)
def enrol(body: CredentialIn, w: WriteDep) -> PasskeyOut:
    """Verify the authenticator's answer to the creation options and keep its public key."""
    w.failing_as(Event.PERSON_PASSKEY_DENIED)
    rp = relying_party(w.platform)
    return _out(w.run(passkeys.finish_registration, json.dumps(body.credential), rp=rp))


@router.post("/{passkey_id}/remove", status_code=200)
def remove(passkey_id: str, body: Removal, w: WriteDep) -> dict[str, Any]:
    """Remove a passkey; needs a fresh second factor (TOTP code or passkey assertion)."""
    w.failing_as(Event.PERSON_PASSKEY_DENIED, passkey_id[:64])
    with w.session.begin():
        index = exchange.people.remove_passkey(
            w.session,
            w.platform.keystore,
            w.caller,
            passkey_id,
            totp=body.totp,
            passkey=json.dumps(body.passkey) if body.passkey else "",
            rp=relying_party(w.platform),
            now=w.now,
            trail=w.platform.trail,
        )
    return {"id": passkey_id, "removed": True, "ledger_index": index}
