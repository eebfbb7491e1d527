"""Pure ASGI middleware that runs before any parsing: body size limits and the source address.

`BodyLimit` counts the bytes actually received, not what `Content-Length` claims: a
declared length over the limit is refused before one byte is read, and a lying, absent
or chunked length is cut off as soon as the count passes the limit (the rest of the
stream is never read). FastAPI reads a route's body before it runs dependencies such as
authentication, so this is what keeps an unauthenticated caller from making the server
buffer and parse arbitrarily large bodies (issue 11: four 80 MB bodies took 1.1 GB).

`ClientAddress` decides the source address once: the socket peer, unless the peer is a
configured trusted proxy (`PDX_TRUSTED_PROXIES`), in which case `Forwarded` (RFC 7239)
or `X-Forwarded-For` is walked from the right past trusted hops. It rewrites
`scope["client"]`, so every later reader (audit, rate limits, policy context) agrees.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM_TYPE = "https://pdx.dev/problems/request-too-large"

# Routes whose bodies are uploads (streamed multipart, see gateway/upload.py): they get
# `max_upload_bytes` plus room for the multipart envelope; every other route gets
# `max_body_bytes`.
UPLOAD_ROUTES = frozenset(
    {
        ("POST", "/v1/datasets"),
        ("POST", "/v1/nodes/datasets"),
        ("POST", "/v1/datasets/scan"),
        ("POST", "/console/provider/datasets"),  # the console's form (gateway/console)
    }
)
ENVELOPE_BYTES = 1 << 20

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class BodyTooLarge(HTTPException):
    """The body passed its limit while streaming (FastAPI re-raises HTTPExceptions as is)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request bodies on this route are at most {limit} bytes")
        self.limit = limit


def _too_large_response(limit: int) -> tuple[Message, Message]:
    body = json.dumps(
        {
            "type": PROBLEM_TYPE,
            "title": "Request body too large",
            "status": 413,
            "detail": f"request bodies on this route are at most {limit} bytes",
            "limit_bytes": limit,
        }
    ).encode()
    start: Message = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimit:
    """Refuse bodies over the route's limit, counting the streamed bytes (module docstring)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes + ENVELOPE_BYTES

    def limit_for(self, method: str, path: str) -> int:
        route = (method, path.rstrip("/") or "/")
        return self.max_upload_bytes if route in UPLOAD_ROUTES else self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            # Refused as early as the header allows: nothing is read, no route runs.
            start, body = _too_large_response(limit)
            await send(start)
            await send(body)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Stop here: the caller's handler answers 413 and the rest of the
                    # stream is never read (the server closes the connection).
                    raise BodyTooLarge(limit)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:
            # Raised where no route's handler catches it (an inner middleware reading the
            # body, such as the JSON depth guard): answer here, once.
            if started:
                raise
            start, body = _too_large_response(limit)
            await send(start)
            await send(body)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            raw = value.decode("latin-1").strip()
            return int(raw) if raw.isdigit() else None
    return None


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(i.strip(), strict=False) for i in items if i.strip())


_FOR = re.compile(r'(?:^|;)\s*for\s*=\s*("[^"]*"|[^;,\s]+)', re.IGNORECASE)


def _address(text: str) -> str | None:
    """An IP address from a forwarding header element (ports and brackets removed)."""
    value = text.strip().strip('"')
    if value.startswith("["):  # RFC 7239 §6: "[2001:db8::1]:4711"
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # IPv4 with a port
        value = value.partition(":")[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None  # "unknown", an obfuscated identifier or garbage


def _header(scope: Scope, name: bytes) -> str | None:
    values = [v.decode("latin-1") for k, v in scope.get("headers") or () if k == name]
    return ", ".join(values) if values else None


def _hops(scope: Scope) -> list[str | None] | None:
    """Forwarded-for hops, client first; `Forwarded` wins over `X-Forwarded-For`."""
    forwarded = _header(scope, b"forwarded")
    if forwarded is not None:
        hops: list[str | None] = []
        for element in forwarded.split(","):
            match = _FOR.search(element)
            hops.append(_address(match.group(1)) if match else None)
        return hops
    xff = _header(scope, b"x-forwarded-for")
    if xff is not None:
        return [_address(h) for h in xff.split(",")]
    return None


def source_address(peer: str | None, scope: Scope, trusted: tuple[Network, ...]) -> str | None:
    """The request's source address: forwarding headers count only from trusted proxies."""

    def is_trusted(address: str | None) -> bool:
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in trusted)

    if not trusted or not is_trusted(peer):
        return peer
    hops = _hops(scope)
    if not hops:
        return peer
    current = peer
    # Walk right to left: each trusted hop vouches for the one before it; the first
    # address not in the trusted list is the client (an unparsable hop stops the walk
    # at the last proxy that can be trusted to have seen it).
    for hop in reversed(hops):
        if hop is None:
            return current
        current = hop
        if not is_trusted(hop):
            return hop
    return current


class ClientAddress:
    """Set `scope["client"]` to the source address (see `source_address`)."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: Iterable[str]) -> None:
        self.app = app
        self.trusted = parse_networks(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            peer = client[0] if client else None
            address = source_address(peer, scope, self.trusted)
            if address != peer:
                scope["client"] = (address, 0)
        await self.app(scope, receive, send)
