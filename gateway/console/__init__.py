"""The web console at /console: server-rendered pages (Jinja2 + htmx) over the same API.

A sub-application mounted on the gateway; every action it takes is an in-process call
to the /v1 route it stands for (see `dispatch`), so one decision point and one trail.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.routing import BaseRoute

from gateway.console import (
    pages_auth,
    pages_jobkeys,
    pages_market,
    pages_market_provider,
    pages_oversight,
    pages_parties,
    pages_rules,
    pages_security,
    panels,
)
from gateway.console.core import BASE, HERE, SECURITY_HEADERS, Console, Refusal, anonymous

__all__ = ["BASE", "mount_console"]


@cache
def _page_routes() -> tuple[BaseRoute, ...]:
    """The console's pages, compiled once per process (they read `request.app.state`)."""
    table = APIRouter()
    for pages in (
        pages_auth,
        pages_security,
        pages_parties,
        pages_rules,
        pages_jobkeys,
        pages_oversight,
        panels,
        pages_market,
        pages_market_provider,
    ):
        table.include_router(pages.router)
    return tuple(table.routes)


def mount_console(app: FastAPI) -> Console:
    """Mount the console on `app` (after its platform is set on `app.state`)."""
    platform: Any = app.state.platform
    settings = platform.settings
    console = Console(
        app,
        idle=timedelta(seconds=settings.console_idle_s),
        absolute=timedelta(seconds=settings.console_absolute_s),
        clock=platform.now,
    )
    sub = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    sub.state.console = console
    sub.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    sub.router.routes.extend(_page_routes())

    @sub.exception_handler(Refusal)
    async def _refused(request: Request, exc: Refusal) -> Response:
        if exc.location is not None:
            if request.headers.get("hx-request"):
                return Response(status_code=204, headers={"HX-Redirect": exc.location})
            return RedirectResponse(exc.location, status_code=303, headers=SECURITY_HEADERS)
        ctx = anonymous(request)
        return ctx.render(
            "error.html", status=exc.status, title=str(exc.status), message=exc.message
        )

    @sub.exception_handler(404)
    async def _missing(request: Request, exc: Exception) -> HTMLResponse:
        ctx = anonymous(request)
        return ctx.render("error.html", status=404, title="404", message=ctx.t("not_found"))

    app.mount(BASE, sub)
    return console
