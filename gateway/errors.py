"""RFC 9457 problem details: the one place where errors become HTTP responses.

`PROBLEMS` is the catalogue: each error TYPE (every package's root and its subclasses,
the gateway's own errors, the framework's) maps to its HTTP status, and through the
class's stable `code` to the problem `type` URI `https://pdx.dev/problems/<code>` and
its `title`. Lookup walks the exception's MRO, so an error no entry names answers as
its nearest listed ancestor; tests/test_error_catalogue.py requires every code to be
listed. Unknown exceptions become a 500 `internal-error` with a request id, the details
only in the log; crypto failures other than the actionable key-management refusals
collapse into one opaque `crypto-failure` (STYLE habit 5, Fernet's `InvalidToken`).
`docs/problems.md` is generated from this table (gateway/problems_doc.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import crypto.errors as ce
import ledger.errors as le
import policies.errors as pe
from audit.errors import AuditError, MonitorUnavailable, VerificationInputError
from crypto.problem import CodedError
from exchange import errors as xe
from gateway.auditing import failure_record
from gateway.limits import BodyTooLarge
from sandbox.errors import ERRORS_BY_CODE as SANDBOX_ERRORS
from sandbox.errors import (
    NodeApprovalRefused,
    NodeError,
    OutboundRefused,
    OutboundTimeout,
    SandboxError,
    UsageExceeded,
)

log = logging.getLogger("pdx.gateway")

PROBLEM_BASE = "https://pdx.dev/problems/"
PROBLEM_JSON = "application/problem+json"


# -- the gateway's own errors -----------------------------------------------------------


class GatewayError(CodedError):
    """Errors raised by the gateway itself (authentication, transport, framing).

    `GatewayError(code, title, detail)` builds the subclass declared below for `code`, so
    the catalogue stays keyed by type; an undeclared code is a programming error. `title`
    is this occurrence's title (the class's is the catalogue's default); `headers` go on
    the response (`WWW-Authenticate`, `Retry-After`).
    """

    code: ClassVar[str] = "gateway-error"
    title: ClassVar[str] = "Gateway error"
    _by_code: ClassVar[dict[str, type[GatewayError]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        GatewayError._by_code.setdefault(cls.code, cls)

    def __new__(cls, code: str, *args: Any, **kwargs: Any) -> Self:
        if cls is GatewayError:
            registered = GatewayError._by_code.get(code)
            if registered is None:
                raise ValueError(f"undeclared gateway problem code {code!r}")
            return super().__new__(registered)  # type: ignore[return-value]
        return super().__new__(cls)

    def __init__(
        self,
        code: str,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail, **extensions)
        self.heading = title
        self.headers = headers or {}


class Unauthenticated(GatewayError):
    code = "unauthenticated"
    title = "Authentication required"


class InvalidToken(GatewayError):
    code = "invalid-token"
    title = "Invalid access token"


class InvalidClient(GatewayError):
    code = "invalid-client"
    title = "Client authentication failed"


class InvalidGrant(GatewayError):
    code = "invalid-grant"
    title = "Invalid token request"


class UnsupportedGrantType(GatewayError):
    code = "unsupported-grant-type"
    title = "Unsupported grant type"


class InvalidRequest(GatewayError):
    code = "invalid-request"
    title = "Invalid request"


class InvalidCursor(GatewayError):
    code = "invalid-cursor"
    title = "Invalid cursor"


class UnsupportedMediaType(GatewayError):
    code = "unsupported-media-type"
    title = "Unsupported media type"


class Denied(GatewayError):
    code = "forbidden"
    title = "Forbidden"


class RateLimited(GatewayError):
    code = "rate-limited"
    title = "Too many requests"


class ServiceUnavailable(GatewayError):
    code = "unavailable"
    title = "Service unavailable"


class IntegerOutOfRange(GatewayError):
    code = "integer-out-of-range"
    title = "Integer out of range"


class JsonTooDeep(GatewayError):
    code = "json-too-deep"
    title = "Request body nested too deeply"


class NotReady(GatewayError):
    code = "not-ready"
    title = "Not ready"


class RouteNotFound(GatewayError):
    code = "not-found"
    title = "Not Found"


class MethodNotAllowed(GatewayError):
    code = "method-not-allowed"
    title = "Method Not Allowed"


# -- the catalogue -------------------------------------------------------------------------


@dataclass(frozen=True)
class ProblemType:
    """How one error type leaves the gateway.

    `code` and `title` replace the error's own (one opaque answer for many errors);
    `public=False` keeps the error's detail and extensions in the log only and answers
    with `safe_detail` instead; `extensions=False` shows the detail but not the extras.
    """

    status: int
    meaning: str = ""
    code: str | None = None
    title: str | None = None
    public: bool = True
    safe_detail: str | None = None
    extensions: bool = True


_INTERNAL = ProblemType(
    500,
    "an unexpected failure; details are in the log under the response's request_id",
    code="internal-error",
    title="Internal error",
    public=False,
    safe_detail="the request failed; quote the request_id when reporting it",
)
_OPAQUE_CRYPTO = ProblemType(
    500,
    "a cryptographic operation failed; deliberately one answer whichever check failed",
    code="crypto-failure",
    title="A cryptographic operation failed",
    public=False,
)
_LEDGER_FAILURE = ProblemType(
    500,
    "the ledger could not complete the request (details in the log)",
    public=False,
    safe_detail="the ledger could not complete the request",
)


def _KEY_REFUSAL(status: int) -> ProblemType:  # noqa: N802 - reads as a constant in the table
    """A key-management refusal: the caller's to fix; its detail names no key material."""
    return ProblemType(status, extensions=False)


PROBLEMS: dict[type[BaseException], ProblemType] = {
    # exchange: what a caller can cause. Unlisted subclasses answer as their parent.
    xe.ExchangeError: ProblemType(400),
    xe.InvalidInput: ProblemType(422),
    xe.InvalidMetadata: ProblemType(422),
    xe.LevelTooLow: ProblemType(422),
    xe.CsvError: ProblemType(422),
    xe.CsvEmpty: ProblemType(422),
    xe.CsvHeaderInvalid: ProblemType(422),
    xe.CsvMalformed: ProblemType(422),
    xe.CsvColumnCount: ProblemType(422),
    xe.CsvEncoding: ProblemType(422),
    xe.UploadTooLarge: ProblemType(413),
    xe.InsufficientStorage: ProblemType(507),
    xe.StoreUnavailable: ProblemType(503),
    xe.StoreMismatch: ProblemType(503),
    xe.BackupError: ProblemType(422),
    xe.RestoreRefused: ProblemType(409),
    xe.NotFound: ProblemType(404),
    xe.Conflict: ProblemType(409),
    xe.DuplicateDatasetName: ProblemType(409),
    xe.Forbidden: ProblemType(403),
    xe.SeparationOfDuties: ProblemType(403),
    xe.InvitationInvalid: ProblemType(403),
    xe.PartyNotVerified: ProblemType(403),
    xe.OutsideAgreement: ProblemType(403),
    xe.AgreementExhausted: ProblemType(403),
    xe.AuthenticationFailed: ProblemType(401),
    xe.InvalidGrant: ProblemType(400),
    xe.NodeAddressRefused: ProblemType(422),
    xe.NodeUnreachable: ProblemType(422),
    xe.NodeDataShredded: ProblemType(400),
    # Fair use of computations (exchange.quotas): refused before anything is written.
    xe.QuotaExceeded: ProblemType(429),
    xe.OutputTooLarge: ProblemType(422),
    xe.ComputationTooCostly: ProblemType(422),
    # Privacy (docs/privacy.md): the providers' rules, budgets at acceptance, bound approvals.
    xe.AnalysisRulesViolation: ProblemType(422),
    xe.BudgetExceeded: ProblemType(409),
    xe.ApprovalMismatch: ProblemType(409),
    xe.ApprovalSignatureInvalid: ProblemType(403),
    xe.SigningKeyUnknown: ProblemType(422),
    # A federated job under a requester key whose requester left a round open past its
    # deadline: the job's failure code, and the answer to a late reply.
    xe.FlRoundTimeout: ProblemType(409),
    xe.JoinStepTimeout: ProblemType(409),
    # crypto: key-management refusals a caller can act on (they name no key material);
    # every other crypto error is one opaque answer.
    ce.CryptoError: _OPAQUE_CRYPTO,
    ce.InvalidCiphertext: _OPAQUE_CRYPTO,
    ce.InvalidKey: _OPAQUE_CRYPTO,
    ce.UnsupportedAlgorithm: _OPAQUE_CRYPTO,
    ce.InvalidShares: _OPAQUE_CRYPTO,
    ce.InvalidGroupElement: _OPAQUE_CRYPTO,
    ce.CertificateError: _OPAQUE_CRYPTO,
    ce.KeyNotFound: _KEY_REFUSAL(404),
    ce.KeyRoleDenied: _KEY_REFUSAL(403),
    ce.DualControlViolation: _KEY_REFUSAL(409),
    ce.KeyStateTransitionInvalid: _KEY_REFUSAL(409),
    ce.DestroyRequestInvalid: _KEY_REFUSAL(409),
    ce.KeyNotActive: _KEY_REFUSAL(409),
    ce.KeyExpired: _KEY_REFUSAL(409),
    ce.KeySuspended: _KEY_REFUSAL(409),
    ce.KeyAlgorithmMismatch: _KEY_REFUSAL(409),
    ce.KeyDestroyed: _KEY_REFUSAL(410),
    ce.KeyPurposeMismatch: _KEY_REFUSAL(400),
    ce.BackupInvalid: _KEY_REFUSAL(400),
    ce.TooFewShares: _KEY_REFUSAL(400),
    ce.DuplicateShares: _KEY_REFUSAL(400),
    ce.InconsistentShares: _KEY_REFUSAL(400),
    ce.HsmUnavailable: _KEY_REFUSAL(503),
    ce.RootKeyPassphraseInvalid: _KEY_REFUSAL(503),
    ce.KeyStoreUnavailable: _KEY_REFUSAL(503),
    ce.CertificateInvalid: _KEY_REFUSAL(401),
    ce.CertificateRequestInvalid: _KEY_REFUSAL(422),
    ce.CertificateAuthorityUnavailable: _KEY_REFUSAL(503),
    # ledger: lookups are the caller's; everything else is the platform's (detail logged).
    le.EntryNotFound: ProblemType(404),
    le.BlockNotFound: ProblemType(404),
    le.InvalidRange: ProblemType(422),
    le.LedgerError: _LEDGER_FAILURE,
    le.CanonicalJsonError: _LEDGER_FAILURE,
    le.ProofError: _LEDGER_FAILURE,
    le.NoteError: _LEDGER_FAILURE,
    le.CheckpointError: _LEDGER_FAILURE,
    le.InvalidRecord: _LEDGER_FAILURE,
    le.InvalidBlock: _LEDGER_FAILURE,
    le.MissingNode: _LEDGER_FAILURE,
    le.ExportTargetNotEmpty: _LEDGER_FAILURE,
    le.SealRace: _LEDGER_FAILURE,
    le.TileRace: _LEDGER_FAILURE,
    le.BlockConflict: _LEDGER_FAILURE,
    le.AnchorError: _LEDGER_FAILURE,
    le.AnchorRefused: _LEDGER_FAILURE,
    le.WitnessRefusal: _LEDGER_FAILURE,
    # policies: a security administrator's bundle, or the engine failing closed.
    pe.PolicyError: ProblemType(500),
    pe.PolicyInvalid: ProblemType(422),
    pe.PolicyTestsFailed: ProblemType(422),
    pe.PolicyConflict: ProblemType(409),
    pe.PolicyRevisionNotFound: ProblemType(404),
    pe.PolicyEngineUnavailable: ProblemType(503),
    pe.PolicyEvaluationFailed: ProblemType(503),
    # sandbox and audit errors are handled inside the platform (a sandbox code becomes a
    # computation's `error`); one that reaches the edge is an internal error.
    **dict.fromkeys(
        (
            *SANDBOX_ERRORS.values(),
            NodeError,
            NodeApprovalRefused,
            OutboundRefused,
            OutboundTimeout,
            UsageExceeded,
        ),
        _INTERNAL,
    ),
    AuditError: _INTERNAL,
    VerificationInputError: _INTERNAL,
    MonitorUnavailable: _INTERNAL,
    CodedError: _INTERNAL,
    # the gateway's own
    GatewayError: ProblemType(400),
    Unauthenticated: ProblemType(401),
    InvalidToken: ProblemType(401),
    InvalidClient: ProblemType(401),
    InvalidGrant: ProblemType(400),
    UnsupportedGrantType: ProblemType(400),
    InvalidRequest: ProblemType(400),
    InvalidCursor: ProblemType(
        400, "the page cursor was altered, or comes from another list or other filters"
    ),
    UnsupportedMediaType: ProblemType(415),
    Denied: ProblemType(403),
    RateLimited: ProblemType(429),
    ServiceUnavailable: ProblemType(503),
    NotReady: ProblemType(503),
    IntegerOutOfRange: ProblemType(422),
    JsonTooDeep: ProblemType(422),
    RouteNotFound: ProblemType(404, "no route has this path"),
    MethodNotAllowed: ProblemType(405, "the route does not accept this method"),
    # the framework's
    RequestValidationError: ProblemType(
        422,
        "the request does not match the operation's schema; `errors` lists each field",
        code="validation-error",
        title="Request validation failed",
    ),
    BodyTooLarge: ProblemType(
        413,
        "the request body passed its size limit; the connection is closed",
        code="request-too-large",
        title="Request body too large",
    ),
    StarletteHTTPException: ProblemType(
        400,
        "another HTTP-level refusal, with the framework's status",
        code="http-error",
        title="HTTP error",
    ),
    Exception: _INTERNAL,
}
"""The one table: error type → status, problem code and title (see the module docstring)."""


def problem_type(exc_type: type[BaseException]) -> tuple[type[BaseException], ProblemType]:
    """The catalogue entry for `exc_type`: its own, else its nearest listed ancestor's."""
    for cls in exc_type.__mro__:
        entry = PROBLEMS.get(cls)
        if entry is not None:
            return cls, entry
    return Exception, _INTERNAL


def code_of(exc_type: type[BaseException]) -> str:
    """The problem code (the `type` URI's last segment) an error of this type answers with."""
    entry = problem_type(exc_type)[1]
    return entry.code or str(getattr(exc_type, "code", "internal-error"))


def title_of(exc_type: type[BaseException]) -> str:
    entry = problem_type(exc_type)[1]
    return entry.title or str(getattr(exc_type, "title", "Error"))


# -- responses ------------------------------------------------------------------------------


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response carries them."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=[PROBLEM_BASE + "not-found"], description="stable problem type")
    title: str
    status: int
    instance: str = Field(description="the request path")
    detail: str | None = None
    request_id: str | None = Field(default=None, description="quote it when reporting")


async def respond(
    request: Request, *, status: int, code: str, detail: str | None = None, **fields: Any
) -> JSONResponse:
    """Audit (denials, failed changes), then answer with `problem(...)`."""
    write = failure_record(request, status=status, code=code, detail=detail)
    if write is not None:
        await run_in_threadpool(write)
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


async def translate(request: Request, exc: Exception) -> JSONResponse:
    """Answer for any error through its catalogue entry."""
    cls, entry = problem_type(type(exc))
    code = entry.code or str(getattr(exc, "code", "internal-error"))
    title = entry.title or getattr(exc, "heading", None) or str(getattr(exc, "title", "Error"))
    status = entry.status
    if entry is _INTERNAL:
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
    elif status >= 500:
        log.error(
            "%s failure %s on %s: %s",
            cls.__module__.split(".")[0],
            getattr(exc, "code", type(exc).__name__),
            request.url.path,
            getattr(exc, "detail", ""),
        )
    if entry.public:
        detail: str | None = getattr(exc, "detail", None)
        extensions: dict[str, Any] = dict(getattr(exc, "extensions", {}))
        if not entry.extensions:
            extensions = {}
    else:
        detail, extensions = entry.safe_detail, {}
    headers: dict[str, str] = dict(getattr(exc, "headers", None) or {})
    return await respond(
        request,
        status=status,
        code=code,
        title=title,
        detail=detail,
        headers=headers or None,
        **extensions,
    )


def install(app: FastAPI) -> None:
    """Register the translators; every error leaves as application/problem+json."""
    for root in (CodedError, SandboxError):
        app.add_exception_handler(root, translate)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        return await respond(
            request,
            status=422,
            code=code_of(RequestValidationError),
            title=title_of(RequestValidationError),
            detail=errors[0]["message"] if errors else None,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        known = {404: RouteNotFound, 405: MethodNotAllowed}.get(exc.status_code)
        return await respond(
            request,
            status=exc.status_code,
            code=code_of(known or StarletteHTTPException),
            title=str(exc.detail),
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def _unknown(request: Request, exc: Exception) -> JSONResponse:
        return await translate(request, exc)

    document(app)


# -- documentation ---------------------------------------------------------------------------


def document(app: FastAPI) -> None:
    """Describe every operation's error answers in the OpenAPI as `Problem` documents.

    Statuses an operation names in its `responses=` keep their description; `4XX` and
    `5XX` (OpenAPI 3.1 §4.8.16.2 ranges) cover the rest, and FastAPI's default 422
    `HTTPValidationError` is replaced: this API answers validation errors as problems.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.setdefault("responses", {})
                for status, response in responses.items():
                    if status[0] in "45":
                        response["content"] = content
                        if status == "422" and response.get("description") == "Validation Error":
                            response["description"] = "Request validation failed"
                responses.setdefault("4XX", {"description": "Client error", "content": content})
                responses.setdefault("5XX", {"description": "Server error", "content": content})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: these statuses answer with a `Problem` document."""
    return {status: {"model": Problem, "content": {PROBLEM_JSON: {}}} for status in statuses}
