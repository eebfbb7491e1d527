"""A console action is the API call: an in-process request to the /v1 route it stands for.

The console never decides or writes by itself. Each action (and each read) is sent,
without a socket, through the whole gateway application (its middlewares, the token
check, the policy enforcement point, the route, `exchange`, the trail) with the signed-in
person's access token. So a console action and the API call are one decision and one
ledger entry, by construction, and the console can show nothing the API would refuse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.types import ASGIApp, Message

# Headers of the browser's request carried into the API call: the request id ties the
# two together in the logs; the forwarding header is honoured only from trusted proxies.
_CARRIED = (b"x-request-id", b"x-forwarded-for", b"user-agent")


@dataclass(frozen=True)
class ApiAnswer:
    """Status, headers and body of the API's answer."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def problem(self) -> str:
        """The problem document's detail (or title), for showing to the person."""
        try:
            doc = self.json()
        except ValueError:
            return f"HTTP {self.status}"
        if isinstance(doc, dict):
            return str(doc.get("detail") or doc.get("title") or f"HTTP {self.status}")
        return f"HTTP {self.status}"


class Api:
    """Calls the gateway application in-process on behalf of a browser request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def call(
        self,
        request: Request,
        method: str,
        path: str,
        *,
        token: str | None = None,
        query: dict[str, Any] | None = None,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> ApiAnswer:
        headers: list[tuple[bytes, bytes]] = [
            (k, v) for k, v in request.scope.get("headers", []) if k in _CARRIED
        ]
        if request.headers.get("host"):
            headers.append((b"host", request.headers["host"].encode("latin-1")))
        if token:
            headers.append((b"authorization", b"Bearer " + token.encode("ascii")))
        payload = b""
        if json_body is not None:
            payload = json.dumps(json_body).encode()
            content_type = "application/json"
        elif form is not None:
            payload = urlencode(form).encode()
            content_type = "application/x-www-form-urlencoded"
        elif body is not None:
            payload = body
        if content_type:
            headers.append((b"content-type", content_type.encode("latin-1")))
        if method != "GET":
            headers.append((b"content-length", str(len(payload)).encode()))
        qs = urlencode({k: v for k, v in (query or {}).items() if v not in (None, "")}, True)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": request.url.scheme,
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": qs.encode(),
            "headers": headers,
            "client": request.scope.get("client"),
            "server": request.scope.get("server"),
            "state": {},
            "extensions": {},
        }
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        status = 500
        out_headers: dict[str, str] = {}
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for k, v in message.get("headers", []):
                    out_headers[k.decode("latin-1").lower()] = v.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return ApiAnswer(status, out_headers, b"".join(chunks))
