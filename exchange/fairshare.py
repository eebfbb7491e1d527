"""Fair share of the job workers between organisations: who runs next, and how many at once.

The rule, kept apart from threads and queues so a shared job queue (issue 13) can keep it:

* jobs wait per key (the requesting organisation), in arrival order within a key;
* the next job comes from the key with the fewest jobs running, ties broken round-robin
  (the key served longest ago goes first), so one key's flood cannot push another key's
  job behind more than the jobs already running;
* no key has more than `per_key` jobs running at once; its other jobs wait even when a
  worker is idle, which keeps a worker free for the next key to arrive.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Generic, TypeVar

__all__ = ["FairShare"]

T = TypeVar("T")


class FairShare(Generic[T]):
    """Waiting jobs per key; `take` picks the next one by the rule above (not thread-safe)."""

    def __init__(self, per_key: int) -> None:
        if per_key < 1:
            raise ValueError("per_key must be at least 1")
        self.per_key = per_key
        self._waiting: dict[str, deque[T]] = {}
        self._turns: deque[str] = deque()  # keys with waiting jobs, least recently served first
        self._running: Counter[str] = Counter()

    def push(self, key: str, item: T) -> None:
        """Queue `item` behind the other jobs of `key`."""
        queue = self._waiting.get(key)
        if queue is None:
            queue = self._waiting[key] = deque()
            self._turns.append(key)
        queue.append(item)

    def take(self) -> tuple[str, T] | None:
        """The next job to start (now counted as running), or None if none may start."""
        best: str | None = None
        for key in self._turns:
            running = self._running[key]
            if running >= self.per_key:
                continue
            if best is None or running < self._running[best]:
                best = key
        if best is None:
            return None
        self._turns.remove(best)
        queue = self._waiting[best]
        item = queue.popleft()
        if queue:
            self._turns.append(best)  # its next job waits for the other keys' turns
        else:
            del self._waiting[best]
        self._running[best] += 1
        return best, item

    def done(self, key: str) -> None:
        """A job of `key` that `take` returned has finished."""
        if self._running[key] <= 0:
            raise ValueError(f"no running job for {key!r}")
        self._running[key] -= 1
        if not self._running[key]:
            del self._running[key]

    def waiting(self, key: str | None = None) -> int:
        if key is not None:
            return len(self._waiting.get(key, ()))
        return sum(len(q) for q in self._waiting.values())

    def running(self, key: str | None = None) -> int:
        return self._running[key] if key is not None else sum(self._running.values())
