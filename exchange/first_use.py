"""Rows created on first use, then locked: the one way to do it under concurrent writers.

`SELECT … FOR UPDATE` on a row that does not exist locks nothing, so two transactions that
both find it missing both insert it; on PostgreSQL the second insert waits for the first
and then violates the key. Here the insert runs in a savepoint and the loser reads the
winner's row under lock instead. (SQLite has one writer and never gets that far.)
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
