"""CPU priority of the sandboxes a thread starts: lower for an organisation with a backlog.

Fair share (`exchange.fairshare`) caps how many jobs one organisation runs at once, but
a running job still takes a whole core from whoever else has a job running. The job
runner therefore starts the jobs of an organisation that has more of them waiting (a
flood, or a large batch) under `lowered()`: their sandboxes run at `LOWERED_NICE`, so
under contention the scheduler gives another organisation's job about ten times their
CPU share, and on an idle machine nothing changes. The hint is per thread: the thread
that runs the job starts its sandboxes.
"""

from __future__ import annotations

import functools
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["LOWERED_NICE", "current_nice", "lowered", "nice_argv"]

# CFS weights: nice 0 is 1024, nice 10 is 110.
LOWERED_NICE = 10

_local = threading.local()


@contextmanager
def lowered(lower: bool = True) -> Iterator[None]:
    """Sandboxes started by this thread inside the block run at `LOWERED_NICE` if `lower`."""
    before = current_nice()
    _local.nice = LOWERED_NICE if lower else 0
    try:
        yield
    finally:
        _local.nice = before


def current_nice() -> int:
    """The niceness increment this thread's sandboxes start with (0: unchanged)."""
    return int(getattr(_local, "nice", 0))


def nice_argv() -> list[str]:
    """`nice -n N` to prefix a sandbox's command line with, or nothing."""
    increment = current_nice()
    if not increment:
        return []
    return [_nice(), "-n", str(increment)]


@functools.cache
def _nice() -> str:
    return shutil.which("nice") or "nice"
