"""Inserts under concurrent writers: rows created on first use, then locked; unique rows.

`SELECT … FOR UPDATE` on a row that does not exist locks nothing, so two transactions that
both find it missing both insert it; on PostgreSQL the second insert waits for the first
and then violates the key. Here the insert runs in a savepoint and the loser reads the
winner's row under lock instead. (SQLite has one writer and never gets that far.)
A row with a unique key a caller chose (a name, a login) is inserted in a savepoint too,
so a taken key refuses the request and leaves the caller's transaction usable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

Row = TypeVar("Row")


def locked_or_created(session: Session, model: type[Row], key: Any, make: Callable[[], Row]) -> Row:
    """The row of `model` with primary key `key`, locked, inserted from `make()` if missing."""
    row = session.get(model, key, with_for_update=True)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = make()
            session.add(row)
        return row
    except IntegrityError:
        found = session.get(model, key, with_for_update=True, populate_existing=True)
        if found is None:
            raise
        return found


def add_unique(session: Session, row: object, taken: Exception) -> None:
    """Insert `row` in a savepoint; raise `taken` (a `Conflict`) when its unique key is in use."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise taken from None
