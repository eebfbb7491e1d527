"""Sign-in failure budgets in the database, so every gateway process of a deployment shares them.

A token bucket per key (a source address): `level` failures may still happen, refilled
at `rate` a second since `at` (UNIX seconds, the wall clock every process shares). A
failure is one atomic upsert (`INSERT ... ON CONFLICT DO UPDATE`, SQLite and PostgreSQL);
reading a level is one primary-key read; a successful sign-in writes nothing here.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Float, String, Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from exchange.models import ExchangeBase

# Rows untouched for longer than a full refill are the same as no row; about one
# failure in PRUNE_ONE_IN deletes them.
PRUNE_ONE_IN = 256


def bucket_shape(capacity: int, per_minute: float, *, what: str) -> tuple[float, float]:
    """A token bucket's capacity and refill rate a second; `what` names it in the refusal."""
    if capacity < 1 or per_minute <= 0:
        raise ValueError(f"{what} needs capacity >= 1 and a positive rate")
    return float(capacity), per_minute / 60.0


class LoginFailureBudget(ExchangeBase):
    """One key's failure budget: `level` at UNIX time `at` (below 0: failures owed)."""

    __tablename__ = "login_failure_budgets"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    level: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)


class FailureBudgets:
    """`capacity` failures per key at once, refilled at `per_minute`, kept in the database.

    A failure may take the level below zero (down to `-capacity`): failures that were
    already being checked when another process spent the last of the budget are owed,
    and the key waits longer, so over time no more than the rate gets through.
    """

    def __init__(
        self,
        sessions: Callable[[], Session],
        *,
        capacity: int,
        per_minute: float,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.capacity, self.rate = bucket_shape(capacity, per_minute, what="a failure budget")
        self._sessions = sessions
        self._rng = rng

    def level(self, key: str, now: float) -> float:
        """How many failures `key` may still have at `now` (capacity when it has none)."""
        with self._sessions() as session:
            row = session.execute(
                select(LoginFailureBudget.level, LoginFailureBudget.at).where(
                    LoginFailureBudget.key == key
                )
            ).first()
        if row is None:
            return self.capacity
        return min(self.capacity, float(row.level) + max(0.0, now - float(row.at)) * self.rate)

    def spend(self, key: str, now: float) -> float:
        """Count one failure of `key` at `now`, atomically; the level left after it."""
        with self._sessions() as session, session.begin():
            left = session.execute(self._upsert(session, key, now)).scalar_one()
            if self._rng() * PRUNE_ONE_IN < 1:
                full = now - self.capacity / self.rate
                session.execute(delete(LoginFailureBudget).where(LoginFailureBudget.at < full))
        return float(left)

    def _upsert(self, session: Session, key: str, now: float) -> Any:
        table = cast(Table, LoginFailureBudget.__table__)
        postgres = session.get_bind().dialect.name == "postgresql"
        least, greatest = (func.least, func.greatest) if postgres else (func.min, func.max)
        insert = postgresql.insert if postgres else sqlite.insert
        elapsed = greatest(0.0, now - table.c.at)
        refilled = least(self.capacity, table.c.level + elapsed * self.rate)
        stmt = insert(table).values(key=key, level=self.capacity - 1.0, at=now)
        return stmt.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "level": greatest(-self.capacity, refilled - 1.0),
                "at": greatest(now, table.c.at),
            },
        ).returning(table.c.level)
