"""Clocks tests move by hand, and waiting on background work with a deadline, not a sleep."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class ManualMonotonic:
    """A monotonic clock (seconds) that moves only when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def eventually(check: Callable[[], bool], *, timeout: float = 10.0, poll: float = 0.02) -> bool:
    """Poll `check` until it holds or `timeout` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


class Runner(Protocol):
    def submit(self, job: Callable[[], None]) -> None: ...


def drain(runner: Runner, *, timeout: float = 30.0) -> None:
    """Return once every job submitted to `runner` before this call has finished.

    The job runner runs jobs one at a time in submission order (exchange.jobs.ThreadRunner),
    so a marker job queued last runs only after all of them: what ran is then final.
    """
    done = threading.Event()
    runner.submit(done.set)
    assert done.wait(timeout), f"the job runner did not finish its queue in {timeout} s"
