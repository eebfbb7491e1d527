"""Reading API answers in either shape, while the API moves to the target style.

Old and new shapes live side by side until every router has moved (i12-api): lists are a
bare list, `{"entries": ...}`, `{"runs": ...}` or the target's `{"items", "total",
"next"}`; a lifecycle field is `status` or `state`, its values kebab- or snake_case;
a digest is a bare `sha256` or a prefixed `digest`.
The console reads them all through these helpers, and asks `Routes` (the gateway's routes,
read once when the console is mounted) which paths the server offers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Keys under which older list answers carry their items.
_LIST_KEYS = ("items", "entries", "runs", "points")


def when(text: Any) -> datetime | None:
    """An RFC 3339 timestamp as the API writes it (`…Z`), or None if it is not one."""
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def items(body: Any) -> list[dict[str, Any]]:
    """The list in an answer: a bare list, `{"items": ...}` or an older named list."""
    if isinstance(body, Mapping):
        for key in _LIST_KEYS:
            found = body.get(key)
            if isinstance(found, list):
                return [i for i in found if isinstance(i, dict)]
        return []
    if isinstance(body, list):
        return [i for i in body if isinstance(i, dict)]
    return []


def total(body: Any) -> int | None:
    """The answer's `total` when it gives one."""
    if isinstance(body, Mapping) and isinstance(body.get("total"), int):
        return int(body["total"])
    return None


def next_link(body: Any) -> tuple[str, dict[str, str]] | None:
    """The `next` page as (path, query), from a relative URL; None on the last page."""
    link = body.get("next") if isinstance(body, Mapping) else None
    if not isinstance(link, str) or not link.startswith("/v1/"):
        return None  # only ever a relative API path: never follow a link elsewhere
    parts = urlsplit(link)
    return parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))


def word(value: Any) -> str:
    """A state word in snake_case (`awaiting-approval` and `awaiting_approval` are one)."""
    return str(value or "").replace("-", "_")


def state(resource: Mapping[str, Any]) -> str:
    """A resource's lifecycle word: `state`, or the older `status`."""
    return word(resource.get("state") or resource.get("status"))


def digest(resource: Mapping[str, Any]) -> str:
    """A content digest as `sha256:<hex>`: the target's `digest`, or the older bare `sha256`."""
    value = resource.get("digest")
    if isinstance(value, str) and value:
        return value
    bare = resource.get("sha256")
    return f"sha256:{bare}" if isinstance(bare, str) and bare else ""


def normalised(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with `state` set (snake_case) whichever field the server used."""
    out = dict(resource)
    out["state"] = state(resource)
    return out


class Routes:
    """The gateway's (method, path template) pairs, read once when the console is mounted."""

    def __init__(self, routes: Iterable[Any]) -> None:
        found: set[tuple[str, str]] = set()
        for route in routes:
            path = getattr(route, "path", None)
            for method in getattr(route, "methods", None) or ():
                if isinstance(path, str):
                    found.add((method.upper(), path))
        self._routes = frozenset(found)

    def offers(self, method: str, path: str) -> bool:
        return (method.upper(), path) in self._routes
