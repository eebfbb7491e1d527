"""OAuth 2 client-credentials token endpoint (RFC 6749 §4.4) and the JWKS."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qsl, unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

import audit
import exchange
from exchange import errors as xe
from gateway.auditing import client_ip
from gateway.errors import GatewayError
from gateway.platform import Platform
from gateway.security import PlatformDep

router = APIRouter(tags=["auth"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_FORM_BYTES = 8 * 1024


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int


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


def _issue(platform: Platform, request: Request, client_id: str, secret: str, basic: bool) -> str:
    now = platform.now()
    with platform.session() as session, session.begin():
        try:
            client = exchange.authenticate_client(session, client_id, secret)
        except xe.AuthenticationFailed:
            request.state.audit_event = "auth.token_denied"
            request.state.object_id = client_id[:64]
            raise _oauth_error(
                "invalid-client", "invalid_client", "invalid client credentials", basic=basic
            ) from None
        org_id = client.org_id
        # 等保 (COMPLIANCE.md §5): successful authentications are audited too.
        audit.record(
            session,
            audit.Subject(client.id, org_id, client_ip(request), request.state.request_id, None),
            audit.AuditEvent(
                "auth.token_issued", "authenticate", audit.Result.SUCCESS, object_id=client.id
            ),
            now=now,
        )
    token, _ = request.app.state.tokens.issue(client_id=client_id, org_id=org_id, now=now)
    assert isinstance(token, str)
    return token


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


@router.post("/v1/auth/token", response_model=TokenResponse)
async def token(request: Request, platform: PlatformDep) -> JSONResponse:
    """Exchange client credentials (form fields or HTTP Basic) for a 15-minute access token."""
    fields = await _form(request)
    if fields.get("grant_type") != "client_credentials":
        raise _oauth_error(
            "unsupported-grant-type",
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported",
        )
    basic = _basic_credentials(request.headers.get("authorization", ""))
    if basic is not None:
        client_id, secret = basic
    else:
        client_id, secret = fields.get("client_id", ""), fields.get("client_secret", "")
    if not client_id or not secret:
        raise _oauth_error(
            "invalid-request", "invalid_request", "client_id and client_secret are required"
        )
    access = await run_in_threadpool(
        _issue, platform, request, client_id, secret, basic is not None
    )
    body = TokenResponse(access_token=access, expires_in=platform.settings.token_ttl_s)
    return JSONResponse(body.model_dump(), headers=_NO_STORE)


@router.get("/.well-known/jwks.json")
def jwks(request: Request) -> dict[str, list[dict[str, str]]]:
    """Public keys that verify access tokens (RFC 7517), current and not yet expired."""
    keys: dict[str, list[dict[str, str]]] = request.app.state.tokens.jwks()
    return keys
