"""The OpenAPI as clients need it: security on every operation, stable ids, local docs pages.

* Every operation names its security: `oauth2` (the client-credentials flow of
  `/v1/auth/token`, so `/docs` can log in) or an explicit `security: []` with
  `x-pdx-public: true` for the routes in `gateway.app.PUBLIC_PATHS`.
* `operationId` is `<tag>_<function>`: stable across FastAPI versions and path changes,
  unique (tests/test_openapi.py checks both).
* Swagger UI and ReDoc are served from the installed `fastapi_offline` package's assets
  (Swagger UI: Apache-2.0, ReDoc: MIT, the package: MIT), so the documentation works on
  a platform with no internet access.
* Problem responses on every operation come from `gateway.errors.document`.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

__all__ = [
    "ASSETS_PATH",
    "SECURITY_SCHEME",
    "install_docs",
    "operation_id",
    "secure_operations",
]

ASSETS_PATH = "/docs/assets"
SECURITY_SCHEME = "oauth2"
TOKEN_URL = "/v1/auth/token"
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def operation_id(route: APIRoute) -> str:
    """`<first tag>_<endpoint function>`, e.g. `computations_approve_run`."""
    tag = str(route.tags[0]) if route.tags else "pdx"
    return f"{tag}_{route.name}".replace("-", "_")


def secure_operations(schema: dict[str, Any], public_paths: frozenset[str]) -> None:
    """Add the OAuth 2 scheme and one security requirement (or `[]`) to every operation."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "oauth2",
        "description": "Client credentials (RFC 6749 §4.4): a client id and secret from an "
        "organisation administrator. Tokens are EdDSA JWTs (RFC 9068), 15 minutes.",
        "flows": {"clientCredentials": {"tokenUrl": TOKEN_URL, "scopes": {}}},
    }
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            if path in public_paths:
                operation["security"] = []
                operation["x-pdx-public"] = True
            else:
                operation["security"] = [{SECURITY_SCHEME: []}]


def install_docs(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """`/docs` (Swagger UI, with the OAuth 2 login), `/docs/oauth2-redirect` and `/redoc`."""
    assets = files("fastapi_offline") / "static"
    app.mount(ASSETS_PATH, StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": False},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )
