"""Request edges: JSON nesting depth and integer ranges, refused as problem+json before any work.

Python's JSON decoder recurses once per nesting level, so a body of 10,000 `[` ends
in RecursionError (a 500) inside FastAPI or Pydantic; a path or query integer beyond
int64 passes validation and overflows in the database driver (another 500). Both are
refused here, before authentication and before the body is parsed:

- `JsonDepthGuard` (ASGI middleware) meters the nesting of every request body that
  may be read as JSON (anything but multipart and urlencoded forms, which have their
  own parsers) while it arrives, and answers 422 `json-too-deep` past `MAX_JSON_DEPTH`.
- `bound_integers` (app-wide dependency) refuses an integer-typed path or query
  parameter outside int64 with 422 `integer-out-of-range`.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable
from typing import Any, Union, get_args, get_origin

from fastapi import Request
from fastapi.dependencies.models import Dependant
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import GatewayError, problem

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_JSON_DEPTH",
    "DepthMeter",
    "JsonDepthGuard",
    "bound_integers",
]

# Deep enough for any document the API defines (policy data, metadata, contracts), far
# below the ~1,000 frames at which the decoder or a validator recurses out.
MAX_JSON_DEPTH = 32
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

_SPECIAL = re.compile(rb'[\\"\[\]{}]')
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
_QUOTE = ord('"')
_BACKSLASH = ord("\\")
# Bodies with parsers of their own: streamed multipart uploads and OAuth forms.
_NOT_JSON = ("multipart/form-data", "application/x-www-form-urlencoded")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class DepthMeter:
    """Maximum bracket nesting of JSON text fed in chunks, ignoring brackets in strings.

    Not a validator: it only counts, at C speed for the bytes between brackets and
    quotes, so that the real parser never sees a document deeper than the limit.
    """

    def __init__(self, limit: int = MAX_JSON_DEPTH) -> None:
        self.limit = limit
        self.depth = 0
        self.exceeded = False
        self._in_string = False
        self._skip = 0  # bytes to skip at the start of the next chunk (after a backslash)

    def feed(self, chunk: bytes) -> bool:
        """Account for `chunk`; returns False once the nesting went past the limit."""
        if self.exceeded:
            return False
        skip_to = self._skip
        self._skip = 0
        for match in _SPECIAL.finditer(chunk):
            pos = match.start()
            if pos < skip_to:
                continue
            byte = chunk[pos]
            if self._in_string:
                if byte == _BACKSLASH:
                    skip_to = pos + 2
                    if skip_to > len(chunk):
                        self._skip = skip_to - len(chunk)
                elif byte == _QUOTE:
                    self._in_string = False
            elif byte == _QUOTE:
                self._in_string = True
            elif byte in _OPEN:
                self.depth += 1
                if self.depth > self.limit:
                    self.exceeded = True
                    return False
            elif byte in _CLOSE:
                self.depth -= 1
        return True


def _json_candidate(scope: Scope) -> bool:
    if scope.get("method") not in _BODY_METHODS:
        return False
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            text = value.decode("latin-1").lower()
            return not any(text.startswith(kind) for kind in _NOT_JSON)
    return True


class JsonDepthGuard:
    """Pure ASGI middleware: refuse a body nested deeper than `limit` before the app reads it.

    The body is read (and metered) here and replayed to the app unchanged; a deep body
    is answered at once, without reading the rest of it.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _json_candidate(scope):
            await self.app(scope, receive, send)
            return
        meter = DepthMeter(self.limit)
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # a disconnect: let the app see it
            if not meter.feed(bytes(message.get("body", b""))):
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def replayed() -> Message:
            for message in replay:
                return message
            return await receive()

        await self.app(scope, replayed, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            Request(scope),
            status=422,
            code="json-too-deep",
            title="Request body nested too deeply",
            detail=f"JSON documents may nest at most {self.limit} arrays or objects",
            max_depth=self.limit,
        )
        response.headers["connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)


# -- integers in paths and queries ---------------------------------------------------------


def _is_int_annotation(annotation: Any) -> bool:
    if annotation is int:
        return True
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_int_annotation(a) for a in get_args(annotation))
    return False


def _int_params(dependant: Dependant) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(path names, query aliases) of the integer parameters anywhere in a route's tree."""
    path: list[str] = []
    query: list[str] = []

    def walk(d: Dependant) -> None:
        for field in d.path_params:
            if _is_int_annotation(field.field_info.annotation):
                path.append(field.alias)
        for field in d.query_params:
            if _is_int_annotation(field.field_info.annotation):
                query.append(field.alias)
        for sub in d.dependencies:
            walk(sub)

    walk(dependant)
    return tuple(path), tuple(query)


# Kept on the route object itself, so it lives and dies with it. Keyed by `id(route)` in a
# module dict before, a route of a later app (tests build many) could reuse a dead route's
# address and be checked with that route's parameters. (Routes define __eq__ and are not
# hashable, so a weak-keyed dict is not an option.)
_ROUTE_PARAMS = "_pdx_int_params"


def _out_of_range(values: Iterable[str]) -> bool:
    for raw in values:
        text = raw.strip()
        # Only what would parse as an integer; anything else is the validator's to refuse.
        # Length first: a 10,000-digit string is refused without converting it.
        digits = text.lstrip("+-").replace("_", "")
        if not digits.isdigit() or not digits.isascii():
            continue
        if len(digits) > 19:
            return True
        value = int(text.replace("_", ""))
        if not INT64_MIN <= value <= INT64_MAX:
            return True
    return False


async def bound_integers(request: Request) -> None:
    """App-wide dependency: integer path and query parameters stay within int64.

    `async` so that it runs on the event loop (no thread hop); the route's integer
    parameters are found once per route from its dependency tree.
    """
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    params: tuple[tuple[str, ...], tuple[str, ...]] | None = getattr(route, _ROUTE_PARAMS, None)
    if params is None:
        params = _int_params(dependant)
        setattr(route, _ROUTE_PARAMS, params)
    path_names, query_names = params
    bad = [n for n in path_names if _out_of_range([str(request.path_params.get(n, ""))])]
    bad += [n for n in query_names if _out_of_range(request.query_params.getlist(n))]
    if bad:
        raise GatewayError(
            "integer-out-of-range",
            "Integer out of range",
            f"{', '.join(bad)}: integers are between {INT64_MIN} and {INT64_MAX}",
            parameters=bad,
        )
