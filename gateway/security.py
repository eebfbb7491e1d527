"""The enforcement point every /v1 request passes: authenticate, build the caller, audit denials."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

import exchange
from audit.catalogue import Event
from gateway import mtls
from gateway.auditing import client_ip
from gateway.errors import GatewayError
from gateway.platform import Platform
from gateway.principals import Principals
from gateway.ratelimit import Limits, too_many
from gateway.tokens import invalid_token

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{8,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


async def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(platform_of)]


def session_of(platform: PlatformDep) -> Iterator[Session]:
    """A database session for the route, closed after it; a write opens `session.begin()`."""
    with platform.session() as session:
        yield session


async def clock_of(platform: PlatformDep) -> datetime:
    """The platform's (injectable) clock, read once for the request."""
    return platform.now()


async def compute_of(platform: PlatformDep) -> exchange.ComputeContext:
    return platform.compute


SessionDep = Annotated[Session, Depends(session_of)]
ClockDep = Annotated[datetime, Depends(clock_of)]
ComputeDep = Annotated[exchange.ComputeContext, Depends(compute_of)]


def request_id_for(header: str | None) -> str:
    """Use the client's X-Request-ID when well-formed, else a fresh one."""
    if header and _REQUEST_ID.match(header):
        return header
    return uuid.uuid4().hex


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise GatewayError(
            "unauthenticated",
            "Authentication required",
            "send an access token: Authorization: Bearer <token>",
            headers={"WWW-Authenticate": 'Bearer realm="pdx"'},
        )
    if scheme.lower() != "bearer" or not token.strip():
        raise GatewayError(
            "invalid-token",
            "Invalid access token",
            "the Authorization header must be 'Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="pdx", error="invalid_request"'},
        )
    return token.strip()


def _authenticate_sync(request: Request, platform: Platform) -> exchange.Caller:
    token = _bearer(request)
    tokens = request.app.state.tokens
    now = platform.now()
    claims = tokens.verify(token, now=now)
    if claims.cnf_x5t is not None:
        # RFC 8705 §3: a bound token only works over the certificate it is bound to.
        if not mtls.bound_thumbprint_matches(claims.cnf_x5t, request.scope):
            request.state.cert_binding = "mismatch"
            raise invalid_token("the token is bound to another client certificate")
        request.state.cert_binding = "bound"
    elif platform.settings.mtls:
        raise invalid_token("only certificate-bound tokens are accepted over mutual TLS")
    principals: Principals = request.app.state.principals
    client = principals.client(claims.client_id)
    if client is None or not client.active:
        raise invalid_token("the token's client is not active")
    if client.org_id != claims.org_id:
        raise invalid_token("the token's organisation does not match its client")
    if principals.revoked(jti=claims.jti, family_id=claims.family_id):
        raise invalid_token("the token was revoked")
    caller = exchange.Caller(
        client_id=client.client_id,
        org_id=client.org_id,
        org_kind=client.org_kind,
        roles=client.roles,
        ip=client_ip(request),
        request_id=request.state.request_id,
        decision_id=None,  # set by the enforcement point's decision
        person_id=client.person_id,
        person_created_by=client.person_created_by,
        org_admin=client.org_admin,
    )
    request.state.caller = caller
    request.state.token_claims = claims
    return caller


async def authenticate(request: Request, platform: PlatformDep) -> exchange.Caller:
    """FastAPI dependency: the authenticated caller, or a 401 problem (audited).

    Runs on the event loop: token checks are CPU-light and client and revocation
    state comes from `Principals` (a database read at most once a second).
    A failure spends the source address's failure budget; past it the answer is 429
    (audited in bursts, not one row per request).
    """
    try:
        return _authenticate_sync(request, platform)
    except GatewayError as exc:
        if exc.code == "unauthenticated":
            raise  # no credentials presented: nothing was tried, nothing to count
        limits: Limits | None = getattr(request.app.state, "limits", None)
        wait = limits.failed(client_ip(request)) if limits is not None else 0.0
        if wait > 0:
            request.state.audit_event = Event.AUTH_RATE_LIMITED
            request.state.audit_deny = True
            raise too_many(wait, "too many failed authentications from this address") from None
        raise


CallerDep = Annotated[exchange.Caller, Depends(authenticate)]


async def reject_control_characters(request: Request) -> None:
    """App-wide dependency: no control characters in the path or query (NUL breaks SQL text).

    `async` although it awaits nothing: FastAPI runs plain functions in a worker thread,
    a hop per request for a few regex checks.
    """
    if _CONTROL.search(request.url.path) or any(
        _CONTROL.search(k) or _CONTROL.search(v) for k, v in request.query_params.multi_items()
    ):
        # A probe rather than a mistake: audited as a denial (docs/compliance.md AUD-02).
        request.state.audit_event = Event.REQUEST_REJECTED
        request.state.audit_deny = True
        raise GatewayError(
            "invalid-request",
            "Invalid request",
            "control characters are not allowed in the path or query",
        )
