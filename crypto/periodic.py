"""A task run every few seconds, or when woken, on a daemon thread from `start` until `stop`.

It lives in `crypto` because every package may import `crypto` and it imports none of
them (as `crypto.rfc3339`); it holds no key material. Subclasses name their thread and
say what one tick does and catch their own errors; or pass a `job`, whose failures are
logged on `log` and tried again at the next tick. `wake` runs a tick at once; an
`interval_s` of None ticks only when woken.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Periodic"]


class Periodic:
    """Calls `_tick` every `interval_s` seconds and when woken, until stopped."""

    def __init__(
        self,
        interval_s: float | None,
        *,
        thread: str,
        join_timeout_s: float | None = 10.0,
        job: Callable[[], object] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        if job is None and type(self)._tick is Periodic._tick:
            raise TypeError("a Periodic needs a job or a subclass that says what a tick does")
        self._job = job
        self._log = log or logging.getLogger(__name__)
        self._interval_s = interval_s
        self._thread_name = thread
        self._join_timeout_s = join_timeout_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def _tick(self) -> None:
        assert self._job is not None  # checked at construction
        try:
            self._job()
        except Exception:
            self._log.exception("scheduled %s failed", self._thread_name)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self._thread_name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Tick now rather than at the end of the interval (at once if not started yet)."""
        self._wake.set()

    def stop(self) -> None:
        """End the thread, waiting up to `join_timeout_s` for a tick under way."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self._join_timeout_s)
            self._thread = None

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            self._tick()
