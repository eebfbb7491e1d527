"""Composition of the job queue (issue 13): which queue, this process's workers, recovery.

`build` picks the queue `PDX_JOB_QUEUE` names and wires the recovery pass; `start` and
`stop` run this process's part (its workers, if any, and the periodic recovery). Gateways
(`gateway.app`'s lifespan) and `pdx worker` (gateway/cli/_worker.py) both use it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import exchange.computations
from exchange.jobqueue import EmbeddedQueue, JobQueue, Recovery
from exchange.workdirs import is_memory_backed, sweep_legacy
from gateway.settings import SettingsError

if TYPE_CHECKING:
    from gateway.platform import Platform

__all__ = ["JobServices", "build", "recover_at_startup"]

log = logging.getLogger("pdx.jobs")


@dataclass
class JobServices:
    """The queue and recovery loop of this process."""

    queue: JobQueue
    recovery: Recovery
    running: bool = False

    def stats(self) -> dict[str, Any]:
        return {**self.queue.stats(), "recovery_passes": self.recovery.passes}


def build(platform: Platform) -> JobServices:
    settings, ctx = platform.settings, platform.compute

    def run(computation_id: str) -> None:
        exchange.computations.run_job(ctx, computation_id)

    queue: JobQueue
    if settings.job_queue == "procrastinate":
        from exchange.jobqueue_pg import ProcrastinateQueue

        queue = ProcrastinateQueue(
            settings.database_url,
            run,
            workers=settings.job_workers,
            heartbeat_s=max(1.0, settings.job_lease_s / 3),
        )
    else:
        queue = EmbeddedQueue(lambda: ctx.runner, run)
    ctx.queue = queue

    def recovery_pass() -> int:
        ctx.job_dirs.sweep()
        # A shared queue re-delivers approved jobs too (deduplicated by procrastinate's
        # queueing lock): an approval acknowledged just before its gateway died is run.
        return exchange.computations.recover(ctx, approved=queue.shared)

    return JobServices(queue, Recovery(recovery_pass, interval_s=settings.job_recovery_interval_s))


def recover_at_startup(platform: Platform) -> int:
    """Under the start-up lock: sweep what dead processes left, queue what is waiting."""
    ctx = platform.compute
    sweep_legacy(platform.settings.home / "jobs")
    ctx.job_dirs.sweep()
    return exchange.computations.recover(ctx)


def start(platform: Platform) -> None:
    """Start this process's workers (if it runs jobs) and its periodic recovery."""
    jobs = platform.jobs
    if jobs is None or jobs.running:
        return
    settings = platform.settings
    runs_jobs = settings.job_queue == "embedded" or settings.job_workers > 0
    if runs_jobs and not is_memory_backed(settings.job_workdir):
        # Decrypted inputs must never be at rest on a disk (issue 13, crash hygiene).
        raise SettingsError(
            f"PDX_JOB_WORKDIR: {settings.job_workdir} is not memory-backed (tmpfs or ramfs)"
        )
    jobs.queue.start()
    jobs.recovery.start()
    jobs.running = True


def stop(platform: Platform) -> None:
    """Stop recovery, let this process's running jobs end, stop renewing their leases."""
    jobs = platform.jobs
    if jobs is None:
        return
    jobs.recovery.stop()
    jobs.queue.stop()
    platform.compute.lease_keeper.stop()
    platform.compute.job_dirs.close()
    jobs.running = False
