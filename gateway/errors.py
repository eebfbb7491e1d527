"""RFC 9457 problem details: the one place where errors become HTTP responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import crypto
from exchange import errors as xe
from gateway.auditing import audit_failure
from ledger import LedgerError
from policies.errors import PolicyError

log = logging.getLogger("pdx.gateway")

PROBLEM_BASE = "https://pdx.dev/problems/"
PROBLEM_JSON = "application/problem+json"

# Stable problem code → HTTP status. Codes not listed fall back by class (see _status).
STATUS: dict[str, int] = {
    xe.InvalidInput.code: 422,
    xe.InvalidMetadata.code: 422,
    xe.LevelTooLow.code: 422,
    xe.CsvError.code: 422,
    xe.CsvEmpty.code: 422,
    xe.CsvHeaderInvalid.code: 422,
    xe.CsvMalformed.code: 422,
    xe.CsvColumnCount.code: 422,
    xe.CsvEncoding.code: 422,
    xe.UploadTooLarge.code: 413,
    xe.InsufficientStorage.code: 507,
    xe.StoreUnavailable.code: 503,
    xe.NotFound.code: 404,
    xe.Conflict.code: 409,
    xe.DuplicateDatasetName.code: 409,
    xe.Forbidden.code: 403,
    xe.AuthenticationFailed.code: 401,
    "unauthenticated": 401,
    "invalid-token": 401,
    "invalid-client": 401,
    "unsupported-grant-type": 400,
    "invalid-request": 400,
    "unsupported-media-type": 415,
    "validation-error": 422,
    "method-not-allowed": 405,
    "internal-error": 500,
    "ledger-entry-not-found": 404,
    "ledger-block-not-found": 404,
    "ledger-invalid-range": 422,
    "ledger-error": 500,
    "unavailable": 503,
    "not-ready": 503,
    "integer-out-of-range": 422,
    "json-too-deep": 422,
    "rate-limited": 429,
    "request-too-large": 413,
    # Fair use of computations (exchange.quotas): refused before anything is written.
    "computation-quota-exceeded": 429,
    "computation-output-too-large": 422,
    "computation-too-costly": 422,
}


# Key-management errors a caller can act on; every other crypto error stays opaque.
CRYPTO_STATUS: dict[str, int] = {
    "key-not-found": 404,
    "key-role-denied": 403,
    "key-dual-control-violation": 409,
    "key-state-transition-invalid": 409,
    "key-destroy-request-invalid": 409,
    "key-not-active": 409,
    "key-expired": 409,
    "key-suspended": 409,
    "key-algorithm-mismatch": 409,
    "key-destroyed": 410,
    "key-purpose-mismatch": 400,
    "key-backup-invalid": 400,
    "shares-too-few": 400,
    "shares-duplicate": 400,
    "shares-inconsistent": 400,
    "hsm-unavailable": 503,
    "root-key-passphrase-invalid": 503,
    "keystore-unavailable": 503,
    "certificate-invalid": 401,
    "certificate-request-invalid": 422,
    "ca-unavailable": 503,
}


POLICY_STATUS: dict[str, int] = {
    "policy-invalid": 422,
    "policy-tests-failed": 422,
    "policy-conflict": 409,
    "policy-revision-not-found": 404,
    "policy-engine-unavailable": 503,
    "policy-evaluation-failed": 503,
}


class GatewayError(Exception):
    """Errors raised by the gateway itself (authentication, transport)."""

    def __init__(
        self,
        code: str,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions


async def respond(
    request: Request, *, status: int, code: str, detail: str | None = None, **fields: Any
) -> JSONResponse:
    """Audit (denials, failed changes), then answer with `problem(...)`."""
    await run_in_threadpool(audit_failure, request, status=status, code=code, detail=detail)
    return problem(request, status=status, code=code, detail=detail, **fields)


def problem(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "instance": request.url.path,
    }
    if detail:
        body["detail"] = detail
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        body["request_id"] = request_id
    body.update(extensions)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _status(err: Exception) -> int:
    for cls in type(err).__mro__:
        code = getattr(cls, "code", None)
        if code in STATUS:
            return STATUS[code]
    return 400


def install(app: FastAPI) -> None:
    """Register the translators; every error leaves as application/problem+json."""

    @app.exception_handler(xe.ExchangeError)
    async def _exchange(request: Request, exc: xe.ExchangeError) -> JSONResponse:
        return await respond(
            request,
            status=_status(exc),
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            **exc.extensions,
        )

    @app.exception_handler(LedgerError)
    async def _ledger(request: Request, exc: LedgerError) -> JSONResponse:
        status = _status(exc)
        if status >= 500:
            log.error("ledger failure %s on %s: %s", exc.code, request.url.path, exc.detail)
        return await respond(
            request,
            status=status,
            code=exc.code,
            title=exc.title,
            detail=exc.detail if status < 500 else "the ledger could not complete the request",
            **(exc.extensions if status < 500 else {}),
        )

    @app.exception_handler(PolicyError)
    async def _policy(request: Request, exc: PolicyError) -> JSONResponse:
        status = POLICY_STATUS.get(exc.code, 500)
        if status >= 500:
            log.error("policy failure %s on %s: %s", exc.code, request.url.path, exc.detail)
        return await respond(
            request,
            status=status,
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            **exc.extensions,
        )

    @app.exception_handler(GatewayError)
    async def _gateway(request: Request, exc: GatewayError) -> JSONResponse:
        return await respond(
            request,
            status=STATUS.get(exc.code, 400),
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            headers=exc.headers,
            **exc.extensions,
        )

    @app.exception_handler(crypto.CryptoError)
    async def _crypto(request: Request, exc: crypto.CryptoError) -> JSONResponse:
        status = CRYPTO_STATUS.get(exc.code)
        if status is None:
            # One opaque answer for decryption and unexpected failures (STYLE.md 5:
            # Fernet's InvalidToken): nothing to learn from which step failed.
            log.error("crypto failure %s on %s: %s", exc.code, request.url.path, exc.detail)
            return await respond(
                request,
                status=500,
                code="crypto-failure",
                title="A cryptographic operation failed",
            )
        # Key-management refusals are the caller's to fix and name no key material.
        return await respond(
            request, status=status, code=exc.code, title=exc.title, detail=exc.detail
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        return await respond(
            request,
            status=422,
            code="validation-error",
            title="Request validation failed",
            detail=errors[0]["message"] if errors else None,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return await respond(
            request,
            status=exc.status_code,
            code=code,
            title=str(exc.detail),
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def _unknown(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path, exc_info=exc)
        return await respond(
            request,
            status=500,
            code="internal-error",
            title="Internal error",
            detail="the request failed; quote the request_id when reporting it",
        )
