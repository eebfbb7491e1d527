"""The FastAPI application: routers behind one enforcement point, problem+json errors."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import audit
import policies
from exchange.login_budgets import FailureBudgets
from gateway import errors, jobs_root
from gateway.auditing import BurstWriter
from gateway.console import mount_console
from gateway.edges import JsonDepthGuard
from gateway.limits import BodyLimit, BodyTooLarge, ClientAddress
from gateway.openapi import install_docs, operation_id, secure_operations
from gateway.pagination import cursor_key
from gateway.pep import unenforced_routes
from gateway.platform import Platform
from gateway.principals import Principals
from gateway.ratelimit import Limits, RateLimiter, SharedFailures, Tarpit
from gateway.routes import api_routes
from gateway.security import request_id_for
from gateway.tokens import ALGORITHM as TOKEN_ALGORITHM
from gateway.tokens import TokenService

# Routes reachable without a token; everything else passes `authenticate`.
PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/v1/auth/token",
        "/v1/auth/revoke",
        "/v1/auth/passkey-options",  # the person's password authenticates
        "/v1/invitations/redeem",  # the one-time invitation code authenticates
        "/v1/invitations/confirm",  # login, password and the first TOTP code
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",  # RFC 8414 metadata
        "/v1/ledger/checkpoint",  # signed, with its cosignatures: anyone may hold it
        "/v1/ledger/verifier-key",  # the key to check it with
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
    }
)


def new_request_id() -> str:
    """32 hex digits, as `uuid4().hex`: Unix milliseconds, then 80 random bits.

    Decision logs and audit records index the request id; ids that arrive in time
    order are appended to those indexes instead of scattered across them (see
    `policies.decision.new_decision_id`).
    """
    return f"{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}{os.urandom(10).hex()}"


class RequestContext:
    """Pure ASGI middleware: request id in, X-Request-ID and hardening headers out."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"x-request-id")
        request_id = request_id_for(raw.decode("latin-1")) if raw else new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"x-request-id", request_id.encode()),
                    (b"x-content-type-options", b"nosniff"),
                ]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Seal the ledger in the background while serving; a final seal on shutdown."""
    platform: Platform = app.state.platform
    platform.sealer.start()
    platform.decision_logs.start()
    bursts: BurstWriter = app.state.burst_writer
    bursts.start()
    if platform.sweeper is not None:
        platform.sweeper.start()
    if platform.compliance is not None:
        platform.compliance.start()
    jobs_root.start(platform)
    try:
        if platform.publishing is not None:
            # Witnesses and the chain (issue 19): network calls in a worker thread, no
            # transaction open; an unreachable chain or a missing contract stops start-up.
            await run_in_threadpool(platform.publishing.start)
        yield
    finally:
        if platform.compliance is not None:
            platform.compliance.stop()
        if platform.sweeper is not None:
            platform.sweeper.stop()
        bursts.stop()
        jobs_root.stop(platform)
        platform.compute.runner.stop()
        platform.compute.nodes.close()
        platform.decision_logs.stop()
        platform.sealer.stop()
        if platform.publishing is not None:
            platform.publishing.stop()  # after the final seal
        if isinstance(platform.pdp, policies.EmbeddedDecisionPoint):
            # Compiled programs for the next start in this process (policies.programs).
            platform.pdp.release_idle()


def create_app(platform: Platform) -> FastAPI:
    """Build the app for an initialised platform (see `gateway.platform.initialise`)."""
    app = FastAPI(
        title="pdx",
        version="0.1.0",
        summary="Privacy-preserving public-data exchange",
        description="Every /v1 endpoint except the token endpoint needs a bearer token. "
        "Errors are RFC 9457 problem details.",
        lifespan=_lifespan,
        docs_url=None,  # served from local assets (gateway.openapi.install_docs)
        redoc_url=None,
        generate_unique_id_function=operation_id,
    )
    app.state.platform = platform
    app.state.cursor_key = cursor_key(platform.identity.store_id if platform.identity else None)
    tokens = TokenService(
        issuer=platform.settings.issuer,
        audience=platform.settings.audience,
        ttl=timedelta(seconds=platform.settings.token_ttl_s),
    )

    def reload_keys() -> None:
        with platform.session() as session, session.begin():
            tokens.load_keys(platform.keystore, session, now=platform.now())

    reload_keys()
    tokens.reload_with(reload_keys)
    app.state.reload_keys = reload_keys  # after a KMS change (rotation, suspension)
    app.state.principals = Principals(platform.session)
    app.state.tokens = tokens
    settings = platform.settings
    app.state.limits = Limits(
        tokens=RateLimiter(
            capacity=settings.token_rate_burst, per_minute=settings.token_rate_per_min
        ),
        failures=RateLimiter(
            capacity=settings.auth_failure_burst, per_minute=settings.auth_failures_per_min
        ),
        logins=SharedFailures(
            FailureBudgets(
                platform.session,
                capacity=settings.auth_failure_burst,
                per_minute=settings.auth_failures_per_min,
            )
        ),
        tarpit=Tarpit(settings.auth_tarpit_ms / 1000),
    )
    app.state.audit_bursts = audit.BurstAggregator(
        window=timedelta(seconds=settings.audit_burst_window_s)
    )
    app.state.burst_writer = BurstWriter(platform, app.state.audit_bursts)
    errors.install(app)
    install_docs(app)
    with_problems = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = with_problems()
        secure_operations(schema, PUBLIC_PATHS)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return await errors.respond(
            request,
            status=413,
            code="request-too-large",
            title="Request body too large",
            detail=exc.detail,
            headers={"Connection": "close"},
            limit_bytes=exc.limit,
        )

    # The API's routes carry the app-wide guards (control characters, integer bounds) and
    # the enforcement point; compiled once per process (gateway/routes.py).
    app.router.routes.extend(api_routes())
    # The web console (a mounted sub-application, outside /v1): its actions are in-process
    # calls to the routes above, so it passes the same enforcement point and trail.
    mount_console(app)
    if platform.compliance is not None:
        # ZT-01 walks the route table.
        platform.compliance.unenforced = lambda: unenforced_routes(app.routes, PUBLIC_PATHS)
        platform.compliance.token_algorithm = TOKEN_ALGORITHM
    # Outermost last: RequestContext, the source address, the body limit, then the JSON
    # depth guard (inside RequestContext, so its problems carry the request id).
    app.add_middleware(JsonDepthGuard)
    app.add_middleware(
        BodyLimit,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    app.add_middleware(ClientAddress, trusted_proxies=settings.trusted_proxies)
    app.add_middleware(RequestContext)
    return app
