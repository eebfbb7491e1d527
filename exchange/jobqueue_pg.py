"""The shared job queue on PostgreSQL: procrastinate (issue 13, `PDX_JOB_QUEUE=procrastinate`).

Approved computations are procrastinate jobs of the task `pdx.run_computation` in the
queue `computations`, in the database's `procrastinate` schema (migration 0020). Any
number of processes take them: gateways (`PDX_JOB_WORKERS` in-process workers, 0 for
none) and `pdx worker` processes on any machine that reaches the database. procrastinate
fetches with `FOR UPDATE SKIP LOCKED`, so each delivery goes to one worker.

procrastinate delivers; it does not decide who runs a job. Its worker heartbeats say
only that a process is alive, so each run also holds the computation's lease
(`exchange.computations.leases`), renewed by this process and checked (fenced) by every
end of the run. When a lease lapses, `retry` puts the dead worker's procrastinate job
back to `todo` (or defers a new one); the next worker takes the lease over.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from procrastinate import App, PsycopgConnector, SyncPsycopgConnector, exceptions

__all__ = ["QUEUE", "QUEUE_SCHEMA", "TASK", "ProcrastinateQueue", "conninfo"]

log = logging.getLogger("pdx.jobs")

QUEUE = "computations"
TASK = "pdx.run_computation"
QUEUE_SCHEMA = "procrastinate"
"""Where migration 0020 put procrastinate's tables (kept out of the platform's schema)."""


def conninfo(database_url: str) -> str:
    """A libpq URL for procrastinate's connections: the platform's, in the queue's schema."""
    url = database_url
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql://" + url[len(prefix) :]
    option = quote(f"-csearch_path={QUEUE_SCHEMA}", safe="")
    return f"{url}{'&' if '?' in url else '?'}options={option}"


class ProcrastinateQueue:
    """procrastinate as the `JobQueue`: defer from any process, work in `workers` threads."""

    shared = True

    def __init__(
        self,
        database_url: str,
        run: Callable[[str], None],
        *,
        workers: int,
        heartbeat_s: float = 10.0,
        poll_s: float = 1.0,
        name: str = "pdx",
    ) -> None:
        self._conninfo = conninfo(database_url)
        self._run = run
        self.workers = workers
        self._heartbeat_s = heartbeat_s
        self._poll_s = poll_s
        self._name = name
        self._app = App(connector=SyncPsycopgConnector(conninfo=self._conninfo, max_size=4))
        self._app.task(name=TASK, queue=QUEUE, pass_context=False)(self._task)
        self._opened = False
        self._open_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self.delivered = 0

    def _task(self, computation_id: str) -> None:
        self.delivered += 1
        self._run(computation_id)

    def _sync_app(self) -> App:
        with self._open_lock:
            if not self._opened:
                self._app.open()
                self._opened = True
        return self._app

    def enqueue(self, computation_id: str, requester_org: str) -> None:
        app = self._sync_app()
        try:
            # One waiting job per computation: re-deliveries while it waits are no-ops.
            app.configure_task(TASK, queue=QUEUE, queueing_lock=computation_id).defer(
                computation_id=computation_id
            )
        except exceptions.AlreadyEnqueued:
            return

    def retry(self, computation_id: str, requester_org: str) -> None:
        """Put the lapsed run's job back to `todo`; defer a new one if it has none."""
        app = self._sync_app()
        stuck = app.job_manager.list_jobs(task=TASK, status="doing", queueing_lock=computation_id)
        for job in stuck:
            assert job.id is not None
            try:
                app.job_manager.retry_job_by_id(job.id, retry_at=datetime.now(UTC))
                return
            except exceptions.ConnectorException:
                continue  # another recoverer retried it first
        self.enqueue(computation_id, requester_org)

    # -- this process's workers ------------------------------------------------------

    def start(self) -> None:
        if self.workers < 1 or self._thread is not None:
            return
        self._ready.clear()
        self._thread = threading.Thread(target=self._serve, name="pdx-queue", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the procrastinate worker did not start")

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        worker_app = self._app.with_connector(
            PsycopgConnector(conninfo=self._conninfo, min_size=1, max_size=self.workers + 2)
        )

        async def main() -> None:
            async with worker_app.open_async():
                self._main = asyncio.current_task()
                self._ready.set()
                await worker_app.run_worker_async(
                    queues=[QUEUE],
                    name=self._name,
                    concurrency=self.workers,
                    wait=True,
                    install_signal_handlers=False,
                    listen_notify=True,
                    fetch_job_polling_interval=self._poll_s,
                    update_heartbeat_interval=self._heartbeat_s,
                    stalled_worker_timeout=self._heartbeat_s * 3,
                    delete_jobs="successful",
                )

        try:
            loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("the procrastinate worker stopped")
        finally:
            self._ready.set()
            loop.close()

    def stop(self) -> None:
        """Let running jobs finish, then stop this process's workers and close the pools."""
        loop, main, thread = self._loop, self._main, self._thread
        if loop is not None and main is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(main.cancel)
            except RuntimeError:
                pass  # the loop has just closed
        if thread is not None:
            thread.join(timeout=120)
        self._thread, self._loop, self._main = None, None, None
        with self._open_lock:
            if self._opened:
                self._app.close()
                self._opened = False

    def stats(self) -> dict[str, Any]:
        counts = {
            row["status"]: row["count"]
            for row in self._sync_app().connector.execute_query_all(
                "SELECT status::text AS status, count(*) AS count FROM procrastinate_jobs "
                "WHERE queue_name = 'computations' GROUP BY status"
            )
        }
        return {"queue": "procrastinate", "workers": self.workers, "jobs": counts}
