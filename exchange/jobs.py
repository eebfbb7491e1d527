"""Computation jobs: the runner, the database-backed privacy budget, sealed job keys.

* `ThreadRunner` runs approved jobs on a few long-lived worker threads (the sandbox
  ties its workers to the thread that starts them), shared fairly between the
  requesting organisations (`exchange.fairshare`); `InlineRunner` runs them in the
  caller's thread.
* `DbPrivacyBudget` backs `sandbox.release.PrivacyBudget` with the tables
  `computation_privacy_budget` (limit and spent per dataset) and
  `computation_privacy_charges` (one row per dataset and job): each charge is one
  transaction that locks the datasets' rows, so concurrent jobs cannot overspend.
* Job keys: the HE secret key a job's result party creates is sealed under a data key
  wrapped by the result party organisation's KEK (the key store's data-key envelope,
  the same path as a dataset's content), so it is unusable without that KEK, and the
  key events are on the ledger. `export_secret`/`restore_result_party` serialise it.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

import crypto
from exchange.fairshare import FairShare
from exchange.first_use import locked_or_created
from exchange.models import PrivacyBudgetAccount, PrivacyCharge
from sandbox.coordinator import ResultParty
from sandbox.errors import InvalidParameters
from sandbox.priority import lowered
from sandbox.release import PrivacyBudget, refuse_overdraw

__all__ = [
    "DbPrivacyBudget",
    "InlineRunner",
    "JobRunner",
    "ThreadRunner",
    "export_secret",
    "open_sealed",
    "restore_result_party",
    "seal",
]

log = logging.getLogger("pdx.jobs")

SessionFactory = Callable[[], Session]

DEFAULT_EPSILON_BUDGET = 3.0
"""docs/compliance.md PI-07: total ε ≤ 3 by default (configurable)."""
DEFAULT_DELTA_BUDGET = 1e-4


# -- runners ------------------------------------------------------------------------------------


class JobRunner(Protocol):
    """Where approved jobs run; `key` names whose job it is (the requesting organisation)."""

    def submit(self, job: Callable[[], None], key: str = "") -> None: ...

    def stop(self) -> None: ...


class InlineRunner:
    """Runs each job at once, in the submitting thread (tests, the CLI)."""

    def submit(self, job: Callable[[], None], key: str = "") -> None:
        job()

    def stop(self) -> None:
        return None


DEFAULT_WORKERS = 2
DEFAULT_RUNNING_PER_KEY = 1


class ThreadRunner:
    """Long-lived worker threads sharing the jobs fairly between keys (`FairShare`).

    Each worker thread lives as long as the runner: the sandbox ties its isolated
    processes to the thread that starts them (`--die-with-parent` is per thread), so a
    job's sessions must not outlive the thread that runs it. `stop` lets running jobs
    finish and leaves waiting ones queued (they are `approved` in the database, and
    `recover` queues them again after a restart; a later `submit` restarts the workers).
    """

    def __init__(
        self,
        name: str = "pdx-jobs",
        *,
        workers: int = DEFAULT_WORKERS,
        per_key: int = DEFAULT_RUNNING_PER_KEY,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._name = name
        self._workers = workers
        self._fair: FairShare[Callable[[], None]] = FairShare(per_key)
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._live = 0  # workers that have not returned (counted under the lock)
        self._stopping = False

    @property
    def workers(self) -> int:
        return self._workers

    def submit(self, job: Callable[[], None], key: str = "") -> None:
        with self._cond:
            self._fair.push(key, job)
            self._stopping = False
            self._threads = [t for t in self._threads if t.is_alive()]
            for i in range(self._live, self._workers):
                t = threading.Thread(target=self._work, name=f"{self._name}-{i}", daemon=True)
                self._threads.append(t)
                self._live += 1
                t.start()
            self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                taken = self._fair.take()
                while taken is None:
                    if self._stopping:
                        self._live -= 1
                        return
                    self._cond.wait()
                    taken = None if self._stopping else self._fair.take()
                key, job = taken
                # More of its jobs waiting: a flood or a batch, run at a lower CPU priority.
                backlog = self._fair.waiting(key) > 0
            try:
                with lowered(backlog):
                    job()
            except Exception:  # noqa: BLE001 - a job records its own failure; keep serving
                log.exception("computation job crashed")
            finally:
                with self._cond:
                    self._fair.done(key)
                    self._cond.notify_all()  # a job of this key may now start

    def idle(self) -> bool:
        """No job waiting or running."""
        with self._cond:
            return self._fair.waiting() == 0 and self._fair.running() == 0

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            threads = list(self._threads)
            self._cond.notify_all()
        for t in threads:
            if t.is_alive():
                t.join(timeout=60)


# -- privacy budget ---------------------------------------------------------------------------


class DbPrivacyBudget(PrivacyBudget):
    """Per-dataset (ε, δ) budgets in the database (see the module docstring)."""

    def __init__(
        self,
        sessions: SessionFactory,
        clock: Callable[[], datetime],
        *,
        epsilon: float = DEFAULT_EPSILON_BUDGET,
        delta: float = DEFAULT_DELTA_BUDGET,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._epsilon = epsilon
        self._delta = delta

    def _account(self, session: Session, dataset_id: str) -> PrivacyBudgetAccount:
        return locked_or_created(
            session,
            PrivacyBudgetAccount,
            dataset_id,
            lambda: PrivacyBudgetAccount(
                dataset_id=dataset_id,
                epsilon_limit=self._epsilon,
                delta_limit=self._delta,
                epsilon_spent=0.0,
                delta_spent=0.0,
                updated_at=self._clock(),
            ),
        )

    def remaining(self, dataset_id: str) -> tuple[float, float]:
        with self._sessions() as session:
            row = session.get(PrivacyBudgetAccount, dataset_id)
            if row is None:
                return self._epsilon, self._delta
            return row.epsilon_limit - row.epsilon_spent, row.delta_limit - row.delta_spent

    def charge(self, dataset_ids: Sequence[str], epsilon: float, delta: float, job_id: str) -> None:
        if epsilon < 0 or delta < 0:
            raise InvalidParameters("cannot charge a negative budget")
        ids = sorted(dict.fromkeys(dataset_ids))  # one lock order for every job
        now = self._clock()
        with self._sessions() as session, session.begin():
            rows = [self._account(session, d) for d in ids]
            paid = session.scalar(
                select(PrivacyCharge.job_id)
                .where(PrivacyCharge.job_id == job_id, PrivacyCharge.dataset_id.in_(ids))
                .limit(1)
            )
            if paid is not None:
                # A recovered run of a job whose lapsed run was charged (issue 13): one
                # job, one charge. The lapsed run released nothing, so this is no less.
                return
            refuse_overdraw(
                (
                    (r.dataset_id, r.epsilon_limit - r.epsilon_spent, r.delta_limit - r.delta_spent)
                    for r in rows
                ),
                epsilon,
                delta,
            )
            for r in rows:
                r.epsilon_spent += epsilon
                r.delta_spent += delta
                r.updated_at = now
                session.add(
                    PrivacyCharge(
                        dataset_id=r.dataset_id,
                        job_id=job_id,
                        epsilon=epsilon,
                        delta=delta,
                        charged_at=now,
                    )
                )

    def charges(self, dataset_id: str) -> list[PrivacyCharge]:
        with self._sessions() as session:
            return list(
                session.scalars(
                    select(PrivacyCharge)
                    .where(PrivacyCharge.dataset_id == dataset_id)
                    .order_by(PrivacyCharge.charged_at)
                )
            )


# -- sealing under a data key ---------------------------------------------------------------------


def seal(key: crypto.DataKey, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt a small object under a data key (the `crypto.stream` format, one chunk)."""
    sink = io.BytesIO()
    with crypto.StreamEncryptor(key.key, sink, aad=aad, suite=key.stream_suite) as enc:
        enc.write(plaintext)
    return sink.getvalue()


def open_sealed(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    """The plaintext of `seal`; `crypto.InvalidCiphertext` for any tampering."""
    return b"".join(crypto.decrypt_stream(key, io.BytesIO(sealed), aad=aad))


# -- the result party's secret ------------------------------------------------------------------
#
# `sandbox.coordinator.ResultParty` keeps its secret keys in memory and offers no
# serialisation, so these two functions read and rebuild its fields; they belong beside
# it as methods and should move there.


def export_secret(party: ResultParty) -> bytes:
    """Serialise a result party's secret keys (to be sealed at once)."""
    return party.export()


def restore_result_party(data: bytes) -> ResultParty:
    """A result party from `export_secret` output, able to decrypt the job's aggregates."""
    return ResultParty.restore(data)
