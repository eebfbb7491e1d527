"""OAuth 2 client-credentials token endpoint (RFC 6749 §4.4) and the JWKS."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from urllib.parse import parse_qsl, unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

import audit
import exchange
import exchange.clients
import exchange.people
import exchange.sessions
from audit.catalogue import Event
from crypto.ca import client_identity, thumbprint_s256
from crypto.errors import CertificateError
from exchange import authn_trail
from exchange import errors as xe
from gateway import mtls
from gateway.auditing import client_ip
from gateway.errors import GatewayError
from gateway.platform import Platform
from gateway.ratelimit import Attempt, Limits, admit, run_check, settled
from gateway.routers.people import person_password, person_token
from gateway.security import PlatformDep

router = APIRouter(tags=["auth"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_FORM_BYTES = 8 * 1024


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


def _oauth_error(code: str, error: str, detail: str, *, basic: bool = False) -> GatewayError:
    """A problem document that also carries RFC 6749 §5.2 `error` for OAuth clients."""
    headers = dict(_NO_STORE)
    if basic:
        headers["WWW-Authenticate"] = 'Basic realm="pdx"'
    title = {"invalid_client": "Client authentication failed"}.get(error, "Invalid token request")
    return GatewayError(code, title, detail, headers=headers, error=error, error_description=detail)


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _oauth_error(
            "invalid-client", "invalid_client", "malformed Basic credentials", basic=True
        ) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _oauth_error(
            "invalid-client", "invalid_client", "malformed Basic credentials", basic=True
        )
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
    return unquote(client_id), unquote(secret)


def _certificate_binding(
    platform: Platform, request: Request, client: exchange.Client
) -> str | None:
    """Under mTLS: the presented certificate must name this client; its x5t#S256 binds."""
    if not platform.settings.mtls:
        return None
    der = mtls.peer_certificate_der(request.scope)
    if der is None:
        raise _oauth_error("invalid-client", "invalid_client", "client certificate required")
    try:
        ident = client_identity(der)
    except CertificateError:
        ident = None
    if ident is None or (ident.client_id, ident.org_id) != (client.id, client.org_id):
        # RFC 8705 §2.1: the certificate authenticates the client it names.
        raise _oauth_error(
            "invalid-client", "invalid_client", "the client certificate names another client"
        )
    return thumbprint_s256(der)


def _subject(request: Request, client_id: str, org_id: str | None) -> audit.Subject:
    return audit.Subject(client_id, org_id, client_ip(request), request.state.request_id, None)


def _issue(
    platform: Platform, request: Request, verified: exchange.clients.VerifiedClient, basic: bool
) -> TokenResponse:
    """client_credentials: a new access token and the first refresh token of a family."""
    client_id = verified.client_id
    with _confirmed(platform, request, verified, basic) as (session, client, now):
        cnf = _certificate_binding(platform, request, client)
        refresh = exchange.sessions.start_family(
            session,
            client,
            now=now,
            ttl=timedelta(seconds=platform.settings.refresh_ttl_s),
            cnf_x5t=cnf,
        )
        # 等保 (docs/compliance.md AUD-02): successful authentications are audited too.
        authn_trail.record_token_issued(
            session, _subject(request, client.id, client.org_id), client.id, now=now
        )
        org_id = client.org_id
    return _tokens(platform, request, client_id, org_id, refresh, now, cnf)


def _refresh(
    platform: Platform,
    request: Request,
    verified: exchange.clients.VerifiedClient,
    basic: bool,
    token: str,
) -> TokenResponse:
    """refresh_token: spend the token, return its successor; reuse revokes the family."""
    client_id = verified.client_id
    with _confirmed(platform, request, verified, basic) as (session, client, now):
        cnf = _certificate_binding(platform, request, client)
        try:
            rotation = exchange.sessions.rotate(
                session, token, client_id=client.id, now=now, cnf_x5t=cnf
            )
        except exchange.InvalidGrant as exc:
            request.state.audit_event = Event.AUTH_REFRESH_DENIED
            request.state.object_id = client.id
            raise _oauth_error("invalid-grant", "invalid_grant", exc.detail) from None
        authn_trail.record_refresh(
            session,
            _subject(request, client.id, client.org_id),
            client.id,
            reused=rotation.reused,
            now=now,
        )
        org_id = client.org_id
    if rotation.issued is None:
        # Committed above: the family stays revoked although this request fails.
        request.app.state.principals.invalidate()
        raise _oauth_error(
            "invalid-grant",
            "invalid_grant",
            "refresh token already used; every token of this login is now revoked",
        )
    return _tokens(platform, request, client_id, org_id, rotation.issued, now, cnf)


def _tokens(
    platform: Platform,
    request: Request,
    client_id: str,
    org_id: str,
    refresh: exchange.sessions.IssuedRefresh,
    now: datetime,
    cnf: str | None,
) -> TokenResponse:
    access, expires_in = request.app.state.tokens.issue(
        client_id=client_id, org_id=org_id, now=now, family_id=refresh.family_id, cnf_x5t=cnf
    )
    return TokenResponse(
        access_token=access,
        expires_in=expires_in,
        refresh_token=refresh.token,
        refresh_expires_in=max(0, int((refresh.expires_at - now).total_seconds())),
    )


def _denied(request: Request, client_id: str, basic: bool) -> GatewayError:
    request.state.audit_event = Event.AUTH_TOKEN_DENIED
    request.state.object_id = client_id[:64]
    attempt: Attempt | None = getattr(request.state, "auth_attempt", None)
    if attempt is not None:
        attempt.failed()  # spends the failure slot the attempt holds
    else:
        limits: Limits = request.app.state.limits
        limits.login_failed(client_ip(request))
    return _oauth_error(
        "invalid-client", "invalid_client", "invalid client credentials", basic=basic
    )


async def _check(
    platform: Platform, request: Request, client_id: str, secret: str, basic: bool
) -> exchange.clients.VerifiedClient:
    """`_verify` on the bounded secret-check threads (`SecretChecks`), not the shared pool."""
    return await run_check(
        request, client_id, partial(_verify, platform, request, client_id, secret, basic)
    )


def _verify(
    platform: Platform, request: Request, client_id: str, secret: str, basic: bool
) -> exchange.clients.VerifiedClient:
    """The secret check (scrypt) with no transaction open (issue 11)."""
    try:
        verified = exchange.clients.verify_client_credentials(platform.session, client_id, secret)
    except xe.AuthenticationFailed:
        raise _denied(request, client_id, basic) from None
    attempt: Attempt | None = getattr(request.state, "auth_attempt", None)
    if attempt is not None:
        attempt.release()  # the secret was right: its failure slot goes back at once
    return verified


@contextmanager
def _confirmed(
    platform: Platform,
    request: Request,
    verified: exchange.clients.VerifiedClient,
    basic: bool,
) -> Iterator[tuple[Session, exchange.Client, datetime]]:
    """One write transaction in which the checked client is still current."""
    now = platform.now()
    with platform.session() as session, session.begin():
        yield session, _confirm(session, request, verified, basic), now


def _confirm(
    session: Session, request: Request, verified: exchange.clients.VerifiedClient, basic: bool
) -> exchange.Client:
    """In the write transaction: not deactivated or rotated since `_verify`."""
    try:
        return exchange.clients.confirm_client(session, verified)
    except xe.AuthenticationFailed:
        raise _denied(request, verified.client_id, basic) from None


def _revoke(
    platform: Platform,
    request: Request,
    verified: exchange.clients.VerifiedClient,
    basic: bool,
    token: str,
) -> None:
    """RFC 7009: revoke a refresh token (its family) or an access token (its jti)."""
    with _confirmed(platform, request, verified, basic) as (session, client, now):
        if token.startswith(exchange.sessions.PREFIX):
            done = exchange.sessions.revoke_refresh(session, token, client_id=client.id, now=now)
        else:
            try:
                claims = request.app.state.tokens.verify(token, now=now)
            except GatewayError:
                claims = None  # RFC 7009 §2.2: invalid tokens need no error
            done = claims is not None and claims.client_id == client.id
            if claims is not None and done:
                exchange.sessions.revoke_access(
                    session,
                    jti=claims.jti,
                    client_id=client.id,
                    expires_at=claims.expires_at,
                    now=now,
                )
        if done:
            authn_trail.record_token_revoked(
                session, _subject(request, client.id, client.org_id), client.id, now=now
            )


async def _form(request: Request) -> dict[str, str]:
    """The form body, read with a size cap (an unbounded form is a memory bomb)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise _oauth_error(
            "invalid-request",
            "invalid_request",
            "send application/x-www-form-urlencoded (RFC 6749 §4.4.2)",
        )
    too_large = _oauth_error(
        "invalid-request", "invalid_request", f"token requests are at most {MAX_FORM_BYTES} bytes"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            raise too_large
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise _oauth_error("invalid-request", "invalid_request", "malformed form body") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            # RFC 6749 §3.2: request parameters must not be included more than once.
            raise _oauth_error("invalid-request", "invalid_request", "a parameter is repeated")
        fields[key] = value
    return fields


def _client_credentials(request: Request, fields: dict[str, str]) -> tuple[str, str, bool]:
    basic = _basic_credentials(request.headers.get("authorization", ""))
    if basic is not None:
        client_id, secret = basic
    else:
        client_id, secret = fields.get("client_id", ""), fields.get("client_secret", "")
    if not client_id or not secret:
        raise _oauth_error(
            "invalid-request", "invalid_request", "client_id and client_secret are required"
        )
    return client_id, secret, basic is not None


@router.post("/v1/auth/token", response_model=TokenResponse)
async def token(request: Request, platform: PlatformDep) -> JSONResponse:
    """Client credentials → a 15-minute access token and a rotating refresh token.

    `grant_type=client_credentials` starts a login; `grant_type=refresh_token` (with
    the client's credentials and `refresh_token`) continues it. Each refresh token works
    once; presenting a used one revokes every token of that login.
    """
    fields = await _form(request)
    grant = fields.get("grant_type")
    if grant == exchange.people.PERSON_GRANT:  # a person: login, password and TOTP
        subject = "person:" + fields.get("username", "")[:64]
        attempt = await admit(request, subject)
        try:
            matched = await run_check(
                request, subject, partial(person_password, platform, request, fields)
            )
            return await person_token(request, platform, fields, matched)
        finally:
            attempt.release()  # no-op when a failure spent the slot
    if grant not in ("client_credentials", "refresh_token"):
        raise _oauth_error(
            "unsupported-grant-type",
            "unsupported_grant_type",
            "grant_type must be client_credentials or refresh_token",
        )
    client_id, secret, basic = _client_credentials(request, fields)
    refresh = fields.get("refresh_token", "")
    if grant == "refresh_token" and not refresh:
        raise _oauth_error("invalid-request", "invalid_request", "refresh_token is required")
    attempt = await admit(request, client_id)
    try:
        verified = await _check(platform, request, client_id, secret, basic)
        if grant == "refresh_token":
            body = await settled(
                request, partial(_refresh, platform, request, verified, basic, refresh)
            )
        else:
            body = await settled(request, partial(_issue, platform, request, verified, basic))
    finally:
        attempt.release()  # no-op when a failure spent the slot
    return JSONResponse(body.model_dump(), headers=_NO_STORE)


@router.post("/v1/auth/revoke")
async def revoke(request: Request, platform: PlatformDep) -> JSONResponse:
    """RFC 7009 token revocation, authenticated with the client's credentials.

    Answers 200 whether or not the token was known (RFC 7009 §2.2).
    """
    fields = await _form(request)
    client_id, secret, basic = _client_credentials(request, fields)
    token = fields.get("token", "")
    if not token:
        raise _oauth_error("invalid-request", "invalid_request", "token is required")
    attempt = await admit(request, client_id)
    try:
        verified = await _check(platform, request, client_id, secret, basic)
        await settled(request, partial(_revoke, platform, request, verified, basic, token))
    finally:
        attempt.release()
    request.app.state.principals.invalidate()
    return JSONResponse({}, headers=_NO_STORE)


class AuthorizationServerMetadata(BaseModel):
    """RFC 8414 §2 metadata: where to get tokens, which grants and client auth methods."""

    issuer: str = Field(description="the `iss` of every access token (PDX_ISSUER)")
    token_endpoint: str
    jwks_uri: str
    revocation_endpoint: str
    grant_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    revocation_endpoint_auth_methods_supported: list[str]
    response_types_supported: list[str] = Field(
        description="empty: there is no authorization endpoint (client credentials only)"
    )
    tls_client_certificate_bound_access_tokens: bool = Field(
        description="RFC 8705 §3.3: tokens are bound to the client certificate (mTLS)"
    )
    token_endpoint_auth_signing_alg_values_supported: list[str] | None = None


@router.get("/.well-known/oauth-authorization-server")
def authorization_server_metadata(
    request: Request, platform: PlatformDep
) -> AuthorizationServerMetadata:
    """RFC 8414 authorization-server metadata, for OAuth 2 client libraries."""
    base = str(request.base_url).rstrip("/")
    methods = ["client_secret_basic", "client_secret_post"]
    return AuthorizationServerMetadata(
        issuer=platform.settings.issuer,
        token_endpoint=f"{base}/v1/auth/token",
        jwks_uri=f"{base}/.well-known/jwks.json",
        revocation_endpoint=f"{base}/v1/auth/revoke",
        grant_types_supported=[
            "client_credentials",
            "refresh_token",
            exchange.people.PERSON_GRANT,
        ],
        token_endpoint_auth_methods_supported=methods,
        revocation_endpoint_auth_methods_supported=methods,
        response_types_supported=[],
        tls_client_certificate_bound_access_tokens=platform.settings.mtls,
    )


class Jwks(BaseModel):
    """RFC 7517 §5 JWK set: the Ed25519 public keys (RFC 8037) that sign access tokens."""

    keys: list[dict[str, str]]


@router.get("/.well-known/jwks.json", response_model=Jwks)
def jwks(request: Request) -> dict[str, list[dict[str, str]]]:
    """Public keys that verify access tokens (RFC 7517), current and not yet expired."""
    keys: dict[str, list[dict[str, str]]] = request.app.state.tokens.jwks()
    return keys
