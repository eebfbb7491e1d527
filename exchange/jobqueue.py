"""Where approved computations wait for a worker: the `JobQueue` interface (issue 13).

Two implementations, chosen by `PDX_JOB_QUEUE`:

* `EmbeddedQueue` (the default, SQLite or PostgreSQL with one gateway): this process's
  runner (`exchange.jobs.ThreadRunner`), shared fairly between organisations.
* `exchange.jobqueue_pg.ProcrastinateQueue` (PostgreSQL): procrastinate's queue in the
  database, which workers in any number of processes and machines share (`pdx worker`;
  a gateway may run none itself).

Either way the queue only delivers: which run owns a job is decided by the
computation's state and its run's lease (`exchange.computations.leases`), so a job
delivered twice runs once, and `Recovery` in every gateway and worker re-delivers jobs
whose lease lapsed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from crypto.periodic import Periodic
from exchange.jobs import JobRunner

__all__ = ["EmbeddedQueue", "JobQueue", "Recovery"]

log = logging.getLogger("pdx.jobs")


class JobQueue(Protocol):
    """Delivers computation ids to workers; `start` runs this process's workers, if any."""

    shared: bool
    """Other processes take jobs from it too (approved jobs are re-delivered periodically)."""

    def enqueue(self, computation_id: str, requester_org: str) -> None: ...

    def retry(self, computation_id: str, requester_org: str) -> None:
        """Deliver again a job whose run's lease lapsed."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class EmbeddedQueue:
    """The runner of this process as the queue (looked up at each call: tests swap runners)."""

    shared = False

    def __init__(self, runner: Callable[[], JobRunner], run: Callable[[str], None]) -> None:
        self._runner = runner
        self._run = run

    def enqueue(self, computation_id: str, requester_org: str) -> None:
        run = self._run
        self._runner().submit(lambda: run(computation_id), key=requester_org)

    def retry(self, computation_id: str, requester_org: str) -> None:
        self.enqueue(computation_id, requester_org)

    def start(self) -> None:
        return None

    def stop(self) -> None:
        self._runner().stop()

    def stats(self) -> dict[str, Any]:
        return {"queue": "embedded", "workers": getattr(self._runner(), "workers", None)}


class Recovery(Periodic):
    """Every `interval_s`: sweep dead workers' directories and re-deliver lapsed jobs.

    `pass_` is one recovery pass (`exchange.computations.recover` and the job
    directories' sweep, wired by the composition root); a failing pass is logged and
    retried at the next tick.
    """

    def __init__(self, pass_: Callable[[], int], *, interval_s: float) -> None:
        super().__init__(interval_s, thread="pdx-recovery", join_timeout_s=30)
        self._pass = pass_
        self.passes = 0

    def _tick(self) -> None:
        try:
            self._pass()
            self.passes += 1
        except Exception:  # noqa: BLE001 - the next tick retries
            log.exception("job recovery pass failed")
