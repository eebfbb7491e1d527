"""`pdx worker`: run computation jobs from the shared queue (PDX_JOB_QUEUE=procrastinate)."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from gateway.cli._common import CliError
from gateway.settings import Settings


def _worker(args: argparse.Namespace) -> int:
    from gateway import jobs_root
    from gateway.platform import build_platform, initialise

    settings = Settings.from_env()
    if settings.job_queue != "procrastinate":
        raise CliError(
            "pdx worker takes jobs from the shared queue: set PDX_JOB_QUEUE=procrastinate "
            "and a PostgreSQL PDX_DATABASE_URL (the embedded queue runs in the gateway)"
        )
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise CliError("--concurrency must be at least 1")
        settings = settings.model_copy(update={"job_workers": args.concurrency})
    platform = build_platform(settings)
    initialise(platform)  # same store checks and migrations as a gateway, under its lock
    stopping = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # The worker's transitions are ledger entries: seal them here too (gateways may be
    # idle or absent); the sealer retries when another process sealed first.
    platform.sealer.start()
    jobs_root.start(platform)
    print(
        f"pdx: worker {platform.compute.lease_keeper.holder} running "
        f"{settings.job_workers} jobs at a time",
        flush=True,
    )
    try:
        stopping.wait()
    finally:
        jobs_root.stop(platform)  # running jobs finish; waiting ones stay queued
        platform.compute.nodes.close()
        platform.sealer.stop()
        platform.engine.dispose()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`pdx worker`."""
    worker = sub.add_parser(
        "worker", help="run computation jobs from the shared queue (PostgreSQL)"
    )
    worker.add_argument(
        "--concurrency", type=int, help="jobs run at a time (default: PDX_JOB_WORKERS)"
    )
    worker.set_defaults(func=_worker)
