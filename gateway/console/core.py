"""The console's plumbing: sessions from the cookie, CSRF, rendering, API calls for a person.

Every page and action is a handler with `Depends(signed_in(...))`; POST handlers also
pass `check_csrf`. Handlers call `ctx.api(...)` (the /v1 route in-process, see
`dispatch`) and `ctx.render(...)`; they hold no domain logic and no database access.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from gateway.console import i18n, reads
from gateway.console.dispatch import Api, ApiAnswer
from gateway.console.sessions import (
    COOKIE,
    PRE_COOKIE,
    ConsoleSession,
    SessionStore,
    csrf_ok,
)

HERE = Path(__file__).resolve().parent
BASE = "/console"
# No inline script or style anywhere: htmx and our two scripts are files under /static.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
# Which console area each role works in (a person may hold one admin role only).
AREAS = {
    "data-provider": "provider",
    "data-consumer": "enterprise",
    "auditor": "auditor",
    "security-admin": "admin",
    "system-admin": "admin",
}


class Refusal(Exception):
    """Ends a request with a page: a redirect to sign in, 403 or 400."""

    def __init__(self, status: int, message: str = "", location: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.location = location


class Console:
    """Shared state of the console: the gateway app it calls, sessions, templates."""

    def __init__(
        self, gateway: Any, *, idle: timedelta, absolute: timedelta, clock: Callable[[], datetime]
    ) -> None:
        self.gateway = gateway
        self.api = Api(gateway)
        # The routes the server offers, read once: the console calls the newer path
        # (e.g. approve-run) where there is one and the older one otherwise.
        self.routes = reads.Routes(gateway.routes)
        self.clock = clock
        self.store = SessionStore(idle=idle, absolute=absolute, clock=clock)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(("html",)),
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # templates ship with the package: no stat() per render
        )

    def session_of(self, request: Request) -> ConsoleSession | None:
        signed = self.store.get(request.cookies.get(COOKIE))
        if signed is not None and signed.person is not None:
            return signed
        return self.store.get(request.cookies.get(PRE_COOKIE))


class Ctx:
    """One request's view: the session, and helpers bound to it."""

    def __init__(self, console: Console, request: Request, session: ConsoleSession) -> None:
        self.console = console
        self.request = request
        self.session = session

    @property
    def person(self) -> Any:
        return self.session.person

    def t(self, key: str, **kw: Any) -> str:
        return i18n.t(self.session.lang, key, **kw)

    def _token(self) -> str | None:
        """The person's access token, re-issued while the console session lives.

        The session was opened with password and TOTP and is bounded by the idle and
        absolute timeouts; the token (≤ 15 min) never leaves the server.
        """
        s = self.session
        if s.person is None:
            return None
        now = self.console.clock()
        if s.token_expires_at is None or s.token_expires_at - now < timedelta(seconds=60):
            token, ttl = self.console.gateway.state.tokens.issue(
                client_id=s.person.person_id, org_id=s.person.org_id, now=now
            )
            s.token, s.token_expires_at = token, now + timedelta(seconds=ttl)
        return s.token

    async def api(self, method: str, path: str, **kw: Any) -> ApiAnswer:
        return await self.console.api.call(self.request, method, path, token=self._token(), **kw)

    async def get_json(self, path: str, **kw: Any) -> Any:
        """GET; the body on success, else None (the refusal's detail is flashed)."""
        answer = await self.api("GET", path, **kw)
        if answer.ok:
            return answer.json()
        self.session.flash.append(answer.problem())
        return None

    async def found_json(self, path: str) -> Any:
        """GET a page's subject; a refusal is the console's 404 (its detail flashed)."""
        body = await self.get_json(path)
        if body is None:
            raise Refusal(404, self.t("not_found"))
        return body

    async def get_all(
        self, path: str, query: dict[str, Any], *, pages: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """A list read page by page along `next` links (at most `pages` calls).

        Returns the items and whether the list was read to its end. Each page is its
        own API call: its own decision and, for audit reads, its own audit record.
        """
        out: list[dict[str, Any]] = []
        for _ in range(pages):
            body = await self.get_json(path, query=query)
            if body is None:
                return out, False
            out.extend(reads.items(body))
            following = reads.next_link(body)
            if following is None:
                return out, True
            path, query = following
        return out, False

    async def remembered(self, key: str, ttl: timedelta, read: Callable[[], Awaitable[Any]]) -> Any:
        """`read()`, reused by this session for `ttl`.

        Only for what changes with a release of the server (the operator catalogue),
        never for audit or party data.
        """
        now = self.console.clock()
        held = self.session.cache.get(key)
        if held is not None and now - held[0] < ttl:
            return held[1]
        value = await read()
        if value is not None:
            self.session.cache[key] = (now, value)
        return value

    def render(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        template = self.console.env.get_template(name)
        flash, self.session.flash = self.session.flash, []
        html = template.render(
            t=self.t,
            lang=self.session.lang,
            csrf=self.session.csrf,
            person=self.session.person,
            area=area_of(self.session),
            path=self.request.url.path,
            flash=flash,
            base=BASE,
            **values,
        )
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        set_cookie(response, self.request, self.session)
        return response

    def redirect(self, location: str) -> Response:
        response = RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)
        set_cookie(response, self.request, self.session)
        return response


def set_cookie(response: Response, request: Request, session: ConsoleSession) -> None:
    response.set_cookie(
        COOKIE if session.person is not None else PRE_COOKIE,
        session.sid,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=BASE,
    )


def area_of(session: ConsoleSession) -> str | None:
    if session.person is None:
        return None
    for role in session.person.roles:
        if role in AREAS:
            return AREAS[role]
    return None


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def anonymous(request: Request) -> Ctx:
    """The session (a new pre-login one if none): for the sign-in pages."""
    console = console_of(request)
    session = console.session_of(request) or console.store.new()
    lang = request.query_params.get("lang")
    if lang in i18n.LANGUAGES:
        session.lang = lang
    return Ctx(console, request, session)


def signed_in(*areas: str) -> Callable[[Request], Awaitable[Ctx]]:
    """Dependency: a signed-in person whose role works in one of `areas` (any if none)."""

    async def dependency(request: Request) -> Ctx:
        ctx = anonymous(request)
        if ctx.person is None:
            raise Refusal(303, location=f"{BASE}/login")
        if areas and area_of(ctx.session) not in areas:
            raise Refusal(403, ctx.t("forbidden"))
        if request.method == "POST":
            await check_csrf(ctx)
        return ctx

    return dependency


async def check_csrf(ctx: Ctx) -> None:
    """Synchronizer token (form field or X-CSRF-Token header) and, if sent, a same Origin."""
    request = ctx.request
    origin = request.headers.get("origin")
    if origin is not None:
        mine = f"{request.url.scheme}://{request.url.netloc}"
        parts = urlsplit(origin)
        if f"{parts.scheme}://{parts.netloc}" != mine:
            raise Refusal(403, ctx.t("csrf_refused"))
    presented = request.headers.get("x-csrf-token")
    if presented is None:
        form = await request.form()
        value = form.get("csrf")
        presented = value if isinstance(value, str) else None
    if not csrf_ok(ctx.session, presented):
        raise Refusal(403, ctx.t("csrf_refused"))
