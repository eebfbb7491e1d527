"""Run leases of computations: grant, heartbeat, fence and expiry (issue 13).

A `running` computation has one lease row (`ComputationLease`): the worker running it
(`holder`), the run's `attempt` and when the lease lapses. The holder's `LeaseKeeper`
renews it (the heartbeat) while the run goes on; once a lease has lapsed, recovery may
run the job again, taking the lease over under `attempt + 1` with a compare-and-set on
the attempt it saw. Every end of a run `fence`s its attempt in the transaction that ends
it, under the computation's row lock, so a fenced-off runner (a worker thought dead, a
paused process) changes nothing: its transaction, ledger entry included, rolls back.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from exchange.errors import StaleTransition
from exchange.models import Computation, ComputationLease

__all__ = [
    "DEFAULT_LEASE_S",
    "Lease",
    "LeaseKeeper",
    "end",
    "expired",
    "fence",
    "grant",
    "holder_id",
    "take_over",
]

log = logging.getLogger("pdx.jobs")

DEFAULT_LEASE_S = 30.0
"""A run not renewed for this long is taken to be dead (3 missed heartbeats)."""


def holder_id() -> str:
    """A lease holder name for this process: host, pid and a random part (pids recycle)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Lease:
    """One run of one computation: the fencing token its ends are checked against."""

    computation_id: str
    attempt: int
    holder: str


def grant(session: Session, comp_id: str, holder: str, now: datetime, ttl: timedelta) -> Lease:
    """The lease of a run starting now (the caller has just moved the job to `running`)."""
    row = session.get(ComputationLease, comp_id, with_for_update=True)
    attempt = 1 if row is None else row.attempt + 1
    if row is None:
        row = ComputationLease(computation_id=comp_id)
        session.add(row)
    row.attempt, row.holder = attempt, holder
    row.heartbeat_at, row.expires_at = now, now + ttl
    session.flush()
    return Lease(comp_id, attempt, holder)


def take_over(
    session: Session, comp_id: str, holder: str, now: datetime, ttl: timedelta
) -> Lease | None:
    """Take a lapsed lease (or a running job's missing one); None while it is live.

    A compare-and-set on the attempt seen: of two recoverers only one wins, and a
    heartbeat that lands first keeps the lease where it is.
    """
    row = session.get(ComputationLease, comp_id)
    if row is None:
        # Running before leases existed, or its grant was lost: take attempt 1 over it.
        return grant(session, comp_id, holder, now, ttl)
    if row.expires_at > now:
        return None
    seen = row.attempt
    moved = session.execute(
        update(ComputationLease)
        .where(
            ComputationLease.computation_id == comp_id,
            ComputationLease.attempt == seen,
            ComputationLease.expires_at <= now,
        )
        .values(attempt=seen + 1, holder=holder, heartbeat_at=now, expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    if getattr(moved, "rowcount", 0) != 1:
        return None
    session.expire(row)
    return Lease(comp_id, seen + 1, holder)


def fence(session: Session, lease: Lease) -> None:
    """Raise `StaleTransition` unless `lease` is still the computation's current run."""
    current = session.scalar(
        select(ComputationLease.attempt).where(
            ComputationLease.computation_id == lease.computation_id
        )
    )
    if current != lease.attempt:
        raise StaleTransition(
            "this run's lease was taken over: another run owns the computation",
            computation_id=lease.computation_id,
        )


def end(session: Session, lease: Lease) -> None:
    """Drop the lease as the run ends (in the transaction that ends it, after `fence`)."""
    session.execute(
        delete(ComputationLease)
        .where(
            ComputationLease.computation_id == lease.computation_id,
            ComputationLease.attempt == lease.attempt,
        )
        .execution_options(synchronize_session=False)
    )


def expired(session: Session, now: datetime) -> list[tuple[str, str]]:
    """(id, requester organisation) of `running` computations whose lease has lapsed."""
    rows = session.execute(
        select(Computation.id, Computation.requester_org)
        .outerjoin(ComputationLease, ComputationLease.computation_id == Computation.id)
        .where(
            Computation.state == "running",
            or_(ComputationLease.expires_at.is_(None), ComputationLease.expires_at <= now),
        )
        .order_by(Computation.updated_at, Computation.id)
    ).tuples()
    return [(c, o) for c, o in rows]


class LeaseKeeper:
    """The leases this process holds, renewed by one heartbeat thread every `ttl / 3`.

    A lease it fails to renew because another run took it over is dropped and logged:
    that run's ends are fenced anyway. A failed renewal (database away) is retried at
    the next beat; past the lease's end the job may be recovered elsewhere.
    """

    def __init__(
        self,
        sessions: Callable[[], Session],
        clock: Callable[[], datetime],
        *,
        ttl_s: float = DEFAULT_LEASE_S,
        holder: str | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("a lease must last some time")
        self._sessions = sessions
        self._clock = clock
        self.ttl = timedelta(seconds=ttl_s)
        self.holder = holder or holder_id()
        self._held: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: list[Lease] = []

    def hold(self, lease: Lease) -> None:
        with self._lock:
            self._held[lease.computation_id] = lease
            if self._thread is None or not self._thread.is_alive():
                self._wake.clear()
                self._thread = threading.Thread(
                    target=self._run, name="pdx-lease-heartbeat", daemon=True
                )
                self._thread.start()

    def drop(self, lease: Lease) -> None:
        with self._lock:
            if self._held.get(lease.computation_id) == lease:
                del self._held[lease.computation_id]

    def held(self) -> list[Lease]:
        with self._lock:
            return list(self._held.values())

    def beat(self) -> int:
        """Renew every held lease once; returns how many were renewed."""
        renewed = 0
        for lease in self.held():
            now = self._clock()
            with self._sessions() as session, session.begin():
                moved = session.execute(
                    update(ComputationLease)
                    .where(
                        ComputationLease.computation_id == lease.computation_id,
                        ComputationLease.attempt == lease.attempt,
                    )
                    .values(heartbeat_at=now, expires_at=now + self.ttl)
                    .execution_options(synchronize_session=False)
                )
            if getattr(moved, "rowcount", 0) == 1:
                renewed += 1
                continue
            with self._lock:
                if self._held.get(lease.computation_id) == lease:
                    del self._held[lease.computation_id]
                    self.lost.append(lease)
            log.warning(
                "computation %s: lease attempt %d was taken over; this run is fenced off",
                lease.computation_id,
                lease.attempt,
            )
        return renewed

    def _run(self) -> None:
        interval = self.ttl.total_seconds() / 3
        while not self._wake.wait(interval):
            with self._lock:
                if not self._held:
                    self._thread = None
                    return
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - the next beat retries; the lease may lapse
                log.exception("renewing job leases failed")

    def stop(self) -> None:
        """Stop renewing (a stopped process's leases lapse and are recovered elsewhere)."""
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self._thread = None
