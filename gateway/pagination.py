"""One pagination for every list route: `?limit=&cursor=` → `{"items", "total", "next"}`.

How a router adopts it (new routes too; see `exchange.paging` for the query side):

    from gateway.pagination import Page, PagingDep   # or pager(default=, maximum=)

    @router.get("/things", response_model=Page[ThingPublic])
    def list_things(paging: PagingDep, session: SessionDep, caller: CallerDep) -> Page[ThingPublic]:
        return paging.page(exchange.list_things(session, caller, window=paging.window))

* `limit` (1..maximum) and `cursor` are query parameters; every other query parameter
  is a filter and stays in the `next` link.
* `next` is a relative URL (path and query) to the following page, or null on the last.
  `total` counts every item the filters match, not just this page.
* The cursor is opaque: the sort key of the last item (`exchange.paging.Key`) with an
  HMAC-SHA256 tag over it, the route and the filters. A cursor that was altered, or is
  replayed on another list or with other filters, answers 400 problem+json
  `invalid-cursor`. The tag's key is derived from the store's random identity, so every
  gateway of one store accepts the others' cursors; it makes tampering evident and the
  format private, it protects nothing secret (a position in a list the caller may read).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Generic, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, Query, Request
from pydantic import BaseModel, Field

from exchange.paging import Key, Slice, Window
from gateway.errors import GatewayError

__all__ = ["Page", "Paging", "PagingDep", "cursor_key", "pager"]

T = TypeVar("T")
U = TypeVar("U")
_TAG_BYTES = 16
_VERSION = 1
MAX_CURSOR = 512


class Page(BaseModel, Generic[T]):
    """A page of a list: its items, how many match in all, and the link to the next page."""

    items: list[T]
    total: int = Field(ge=0, description="items matching the filters, over every page")
    next: str | None = Field(
        description="relative URL of the next page (same filters), null on the last page"
    )


def cursor_key(store_id: str | None) -> bytes:
    """The cursor tag's key: from the store identity (shared by its gateways), else random."""
    if not store_id:
        return os.urandom(32)
    return hashlib.sha256(b"pdx pagination cursor v1\x00" + store_id.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scope(request: Request) -> bytes:
    """What a cursor is bound to: the route's path and its filters (not limit or cursor)."""
    filters = sorted(
        (k, v) for k, v in request.query_params.multi_items() if k not in ("limit", "cursor")
    )
    return json.dumps([request.url.path, filters], separators=(",", ":")).encode()


def _encode_value(value: str | int | datetime) -> str:
    if isinstance(value, datetime):
        return "d" + value.isoformat()
    if isinstance(value, bool):  # bool is an int: refuse it rather than confuse it
        raise TypeError("cannot page on a boolean")
    if isinstance(value, int):
        return "i" + str(value)
    return "s" + value


def _decode_value(text: str) -> str | int | datetime:
    tag, body = text[:1], text[1:]
    if tag == "d":
        value = datetime.fromisoformat(body)
        if value.tzinfo is None:
            raise ValueError("naive time in cursor")
        return value
    if tag == "i":
        return int(body)
    if tag == "s":
        return body
    raise ValueError("unknown cursor value")


def invalid_cursor(detail: str = "the cursor is not one this list issued") -> GatewayError:
    return GatewayError("invalid-cursor", "Invalid cursor", detail)


def encode_cursor(secret: bytes, request: Request, key: Key) -> str:
    payload = json.dumps([_VERSION, [_encode_value(v) for v in key]], separators=(",", ":"))
    body = payload.encode()
    tag = hmac.new(secret, _scope(request) + b"\x00" + body, hashlib.sha256).digest()
    return _b64(body) + "." + _b64(tag[:_TAG_BYTES])


def decode_cursor(secret: bytes, request: Request, cursor: str) -> Key:
    """The key a cursor carries, after checking its tag; `invalid-cursor` otherwise."""
    body_text, sep, tag_text = cursor.partition(".")
    if not sep:
        raise invalid_cursor()
    try:
        body, tag = _unb64(body_text), _unb64(tag_text)
    except ValueError:
        raise invalid_cursor() from None
    expected = hmac.new(secret, _scope(request) + b"\x00" + body, hashlib.sha256).digest()
    # Constant-time: the tag must not be guessable byte by byte.
    if not hmac.compare_digest(tag, expected[:_TAG_BYTES]):
        raise invalid_cursor()
    try:
        version, values = json.loads(body)
        if version != _VERSION or not isinstance(values, list):
            raise ValueError("unknown cursor version")
        return tuple(_decode_value(str(v)) for v in values)
    except (ValueError, TypeError):
        raise invalid_cursor() from None


@dataclass(frozen=True)
class Paging:
    """The request's page window and how to answer with a `Page`."""

    request: Request
    window: Window
    secret: bytes

    def page(self, found: Slice[T]) -> Page[T]:
        return Page[T](items=found.items, total=found.total, next=self.next_link(found.last))

    def page_as(self, found: Slice[U], convert: Callable[[U], T]) -> Page[T]:
        """A page whose items are converted on the way out (e.g. ORM rows to models)."""
        return Page[T](
            items=[convert(i) for i in found.items],
            total=found.total,
            next=self.next_link(found.last),
        )

    def next_link(self, last: Key | None) -> str | None:
        if last is None:
            return None
        params = [(k, v) for k, v in self.request.query_params.multi_items() if k != "cursor"]
        params.append(("cursor", encode_cursor(self.secret, self.request, last)))
        return f"{self.request.url.path}?{urlencode(params)}"


def _secret(request: Request) -> bytes:
    secret: bytes | None = getattr(request.app.state, "cursor_key", None)
    if secret is None:
        secret = request.app.state.cursor_key = os.urandom(32)
    return secret


def pager(*, default: int = 50, maximum: int = 500) -> Callable[..., Awaitable[Paging]]:
    """A FastAPI dependency: `limit` (1..maximum) and `cursor` from the query → `Paging`."""
    limit_t = Annotated[int, Query(ge=1, le=maximum, description="items per page")]
    cursor_t = Annotated[
        str | None,
        Query(max_length=MAX_CURSOR, description="from the previous page's `next` link"),
    ]

    async def paging(request: Request, limit: int = default, cursor: str | None = None) -> Paging:
        secret = _secret(request)
        after = decode_cursor(secret, request, cursor) if cursor else None
        return Paging(request=request, window=Window(limit=limit, after=after), secret=secret)

    # Real objects, not the strings `from __future__ import annotations` leaves: FastAPI
    # reads these to build the query parameters, and `maximum` is this call's.
    paging.__annotations__ = {
        "request": Request,
        "limit": limit_t,
        "cursor": cursor_t,
        "return": Paging,
    }
    return paging


PagingDep = Annotated[Paging, Depends(pager())]
"""The usual page: 50 items by default, at most 500."""
