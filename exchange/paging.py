"""Keyset pages: one way for every list in `exchange` to return a stable slice and its total.

Every list of the API pages the same way (`gateway.pagination` turns a `Slice` into
`{"items", "total", "next"}` with an opaque, tamper-evident cursor). Here, without HTTP:

* a `Window` is what the caller asked for: `limit` rows after the position `after`
  (the sort key of the last row of the previous page, or None for the first page);
* `keyset(...)` runs a SELECT ordered by its key columns, normally `(created, id)`,
  ascending, so a page never shifts when rows are added (new rows sort last) and no
  row is skipped or repeated while paging (unlike LIMIT/OFFSET);
* `in_memory(...)` does the same for lists that are not a table (operators, key
  versions, policy revisions);
* the `Slice` holds the page's items, the total number of rows the filters match, and
  `last`, the key to continue after (None on the last page).

A key is a tuple of `str`, `int` or timezone-aware `datetime` values, one per ordering
column; `gateway.pagination` encodes exactly those types.

    def list_things(session, caller, *, window: Window) -> Slice[ThingPublic]:
        stmt = select(Thing).where(Thing.org_id == caller.org_id)
        return keyset(session, stmt, (Thing.created_at, Thing.id), window, to_public)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from exchange.errors import InvalidInput

__all__ = ["MAX_LIMIT", "Key", "Slice", "Window", "after_clause", "in_memory", "keyset"]

MAX_LIMIT = 1000
Key = tuple[str | int | datetime, ...]
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Window:
    """`limit` rows after the row whose sort key is `after` (None: from the start)."""

    limit: int = 50
    after: Key | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be 1-{MAX_LIMIT}")


@dataclass(frozen=True)
class Slice(Generic[T]):
    """One page: its items, how many rows match in all, and the key to continue after."""

    items: list[T]
    total: int
    last: Key | None


def after_clause(columns: Sequence[InstrumentedAttribute[Any]], key: Key) -> ColumnElement[bool]:
    """(c1, c2, ...) > (k1, k2, ...), written out: row values are not on every backend."""
    if len(key) != len(columns):
        raise InvalidInput("the cursor does not fit this list")
    clauses = []
    for i, column in enumerate(columns):
        equal = [columns[j] == key[j] for j in range(i)]
        clauses.append(and_(*equal, column > key[i]))
    return or_(*clauses)


def keyset(
    session: Session,
    stmt: Select[tuple[R]],
    order: Sequence[InstrumentedAttribute[Any]],
    window: Window,
    convert: Callable[[R], T],
    *,
    total: int | None = None,
) -> Slice[T]:
    """One page of `stmt` (selecting one entity) in ascending `order`, after `window.after`.

    `order` must be unique per row (end it with the primary key). `total` may be given
    when the caller has already counted (e.g. from grouped visibility decisions).
    """
    columns = list(order)
    if total is None:
        counted = select(func.count()).select_from(stmt.order_by(None).subquery())
        total = int(session.scalar(counted) or 0)
    page = stmt.order_by(*columns)
    if window.after is not None:
        page = page.where(after_clause(columns, window.after))
    rows = list(session.scalars(page.limit(window.limit + 1)))
    more = len(rows) > window.limit
    rows = rows[: window.limit]
    last: Key | None = None
    if more and rows:
        last = tuple(_value(rows[-1], c) for c in order)
    return Slice(items=[convert(r) for r in rows], total=total, last=last)


def _value(row: Any, column: InstrumentedAttribute[Any]) -> str | int | datetime:
    value = getattr(row, column.key)
    if not isinstance(value, str | int | datetime):
        raise TypeError(f"cannot page on {column.key}: {type(value).__name__}")
    return value


def in_memory(items: Iterable[T], key: Callable[[T], Key], window: Window) -> Slice[T]:
    """The same page over a list held in memory, ordered by `key` (unique per item)."""
    ordered = sorted(items, key=key)
    if window.after is not None:
        after = window.after
        try:
            ordered_after = [i for i in ordered if key(i) > after]
        except TypeError:
            raise InvalidInput("the cursor does not fit this list") from None
    else:
        ordered_after = ordered
    page = ordered_after[: window.limit]
    more = len(ordered_after) > window.limit
    return Slice(items=page, total=len(ordered), last=key(page[-1]) if more and page else None)
