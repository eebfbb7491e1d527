"""A small thread-safe cache whose entries expire after a fixed time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from crypto.lru import Lru

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Bounded LRU whose entries are dropped `ttl_s` seconds after they were put."""

    def __init__(
        self,
        *,
        ttl_s: float,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock  # monotonic seconds; tests advance a fake one instead of sleeping
        self._ttl = ttl_s
        self._items: Lru[K, tuple[float, V]] = Lru(max_entries)
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.peek(key)  # a read does not renew the entry's place
            if item is None:
                return None
            if self.clock() - item[0] >= self._ttl:
                self._items.pop(key)
                return None
            return item[1]

    def put(self, key: K, value: V, *, at: float | None = None) -> None:
        """Keep `value` from now, or from `at` (when the value was read) if given."""
        with self._lock:
            self._items.put(key, (self.clock() if at is None else at, value))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
