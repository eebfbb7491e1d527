"""Crash hygiene of the object store: sweep upload leftovers at start-up and periodically."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from crypto.periodic import Periodic
from exchange.models import Dataset
from exchange.storage import SWEEP_GRACE_S, ObjectStore

log = logging.getLogger("pdx.hygiene")

SessionFactory = Callable[[], Session]


def sweep_orphans(
    objects: ObjectStore, sessions: SessionFactory, *, grace_s: float = SWEEP_GRACE_S
) -> list[str]:
    """Remove stale `.partial` files and objects that no dataset row names.

    Rows are looked up only for the stale candidates and only after they were found
    stale (`ObjectStore.sweep_checked`), so an object whose row commits meanwhile is
    kept. Never raises: a database or filesystem failure is logged and retried later.
    """

    def with_rows(ids: Collection[str]) -> set[str]:
        with sessions() as session:
            return set(session.scalars(select(Dataset.id).where(Dataset.id.in_(list(ids)))))

    try:
        removed = objects.sweep_checked(with_rows, grace_s=grace_s)
    except Exception:  # noqa: BLE001 - a sweep must not take the process down
        log.exception("object sweep failed; retrying at the next interval")
        return []
    if removed:
        log.warning("object sweep removed %d leftover file(s): %s", len(removed), removed[:10])
    return removed


class Sweeper(Periodic):
    """Runs `sweep_orphans` every `interval_s` on a daemon thread until stopped."""

    def __init__(
        self,
        objects: ObjectStore,
        sessions: SessionFactory,
        *,
        interval_s: float,
        grace_s: float = SWEEP_GRACE_S,
    ) -> None:
        super().__init__(interval_s, thread="pdx-object-sweep")
        self._objects = objects
        self._sessions = sessions
        self._grace_s = grace_s
        self.passes = 0

    def sweep_now(self) -> list[str]:
        removed = sweep_orphans(self._objects, self._sessions, grace_s=self._grace_s)
        self.passes += 1
        return removed

    def _tick(self) -> None:
        self.sweep_now()
