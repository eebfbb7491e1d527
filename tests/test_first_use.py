"""A row created on first use by two transactions at once: both go on, one row (issue 13).

`SELECT … FOR UPDATE` of a missing row locks nothing; before `exchange.first_use`, the
second of two transactions that both found a budget or lineage row missing failed on the
key (PostgreSQL), and its request or job failed with it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from exchange.first_use import locked_or_created
from exchange.privacy_tables import LineageBudget
from gateway.platform import Platform
from tests.helpers.locks import wait_until_blocked

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def fresh(lineage: str) -> LineageBudget:
    return LineageBudget(lineage=lineage, epsilon_spent=0.0, delta_spent=0.0, updated_at=NOW)


def spend(platform: Platform, lineage: str, epsilon: float) -> None:
    with platform.sessions() as session, session.begin():
        row = locked_or_created(session, LineageBudget, lineage, lambda: fresh(lineage))
        row.epsilon_spent += epsilon


def test_the_second_creator_waits_and_spends_on_the_first_ones_row(
    platform: Platform, creds: dict[str, Any]
) -> None:
    errors: list[BaseException] = []

    def second() -> None:
        try:
            spend(platform, "sha256:ab", 0.25)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    with platform.sessions() as session, session.begin():
        row = locked_or_created(session, LineageBudget, "sha256:ab", lambda: fresh("sha256:ab"))
        row.epsilon_spent += 0.5
        session.flush()
        other = threading.Thread(target=second)
        other.start()
        wait_until_blocked(session, other)
    other.join(60)
    assert not other.is_alive() and errors == []
    with platform.sessions() as session:
        found = session.get(LineageBudget, "sha256:ab")
        assert found is not None and found.epsilon_spent == 0.75


def test_an_existing_row_is_locked_and_a_missing_one_made_once(
    platform: Platform, creds: dict[str, Any]
) -> None:
    spend(platform, "sha256:cd", 0.1)
    spend(platform, "sha256:cd", 0.2)
    with platform.sessions() as session:
        rows = session.query(LineageBudget).all()
        assert [(r.lineage, round(r.epsilon_spent, 9)) for r in rows] == [("sha256:cd", 0.3)]
