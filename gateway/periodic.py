"""A job run every few seconds on a daemon thread (the compliance schedules, the burst writer)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

Ticking = tuple[threading.Event, threading.Thread]
"""What `every` started: set the event to stop the thread, then join it."""


def every(name: str, interval_s: float, job: Callable[[], object], log: logging.Logger) -> Ticking:
    """Run `job` every `interval_s` seconds on the daemon thread `pdx-<name>`, from now on.

    A failing run is logged on `log`; the next tick tries again.
    """
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                job()
            except Exception:
                log.exception("scheduled %s failed", name)

    thread = threading.Thread(target=loop, name=f"pdx-{name}", daemon=True)
    thread.start()
    return stop, thread
