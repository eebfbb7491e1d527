"""Compiled policy programs kept across decision points: a process-wide pool of idle ones.

Compiling a bundle is the slow part of loading a policy (the built-in bundle takes a
large share of a platform start-up). A process often activates a bundle it compiled
before: a platform restarted in the same process, a rollback to an earlier revision, a
second platform, a dry run of the active policy. Those take a compiled program from here.

A program holds its input as interpreter state and is not thread-safe, so the pool holds
only *idle* programs and hands each to one caller: `take` removes the program it returns,
and only its owner may `give` it back, once it no longer uses it. Programs are keyed by
their bundle's digest, which covers the modules, the data (grading matrix) and the
entrypoints a program is compiled from, so equal digests compile to equal programs.
Only programs that compiled get here: a bundle that does not compile is never pooled.

Bounded: at most `per_digest` idle programs per digest, at most `max_digests` digests,
the least recently given or taken digest dropped first. A program turned away is freed
(its interpreter released) when its last reference goes. The built-in bundle compiles in
~200 ms into ~9 MiB, so the default bound (4 × 2) holds at most ~72 MiB of idle programs.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["PROGRAMS", "ProgramPool"]


class ProgramPool:
    """Idle compiled programs by bundle digest; thread-safe, bounded, least recent out."""

    def __init__(self, *, max_digests: int = 4, per_digest: int = 2) -> None:
        if max_digests < 0 or per_digest < 0:
            raise ValueError("pool bounds must not be negative")
        self.max_digests = max_digests
        self.per_digest = per_digest
        self._idle: OrderedDict[str, list[Any]] = OrderedDict()
        self._lock = threading.Lock()
        # Programs handed back by finalizers, which may run inside a garbage collection
        # that interrupted this very pool while it held its lock: SimpleQueue.put is
        # safe there, so they wait here until the next call takes them in.
        self._handed_back: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.hits = 0
        self.misses = 0

    def give_later(self, digest: str, program: Any) -> None:
        """As `give`, safe from a finalizer or `__del__` (taken in by the next call)."""
        self._handed_back.put((digest, program))

    def _take_in(self) -> None:
        while True:
            try:
                digest, program = self._handed_back.get_nowait()
            except queue.Empty:
                return
            self.give(digest, program)

    def take(self, digest: str) -> Any | None:
        """An idle program for `digest`, now the caller's alone; None if there is none."""
        self._take_in()
        with self._lock:
            programs = self._idle.get(digest)
            if not programs:
                self.misses += 1
                return None
            self.hits += 1
            program = programs.pop()
            if programs:
                self._idle.move_to_end(digest)
            else:
                del self._idle[digest]
            return program

    def give(self, digest: str, program: Any) -> bool:
        """Keep `program` (compiled from the bundle `digest`, no longer used by the caller).

        Returns False when the bound turns it away.
        """
        with self._lock:
            programs = self._idle.get(digest)
            if programs is None:
                if self.max_digests == 0 or self.per_digest == 0:
                    return False
                programs = self._idle[digest] = []
                while len(self._idle) > self.max_digests:
                    self._idle.popitem(last=False)
            self._idle.move_to_end(digest)
            if len(programs) >= self.per_digest or any(p is program for p in programs):
                return False
            programs.append(program)
            return True

    def get_or_compile(self, digest: str, compile: Callable[[], Any]) -> Any:
        """An idle program for `digest`, or a new one from `compile` (not pooled yet)."""
        program = self.take(digest)
        return compile() if program is None else program

    def digests(self) -> list[str]:
        """The digests held, least recently used first."""
        self._take_in()
        with self._lock:
            return list(self._idle)

    def clear(self) -> None:
        self._take_in()
        with self._lock:
            self._idle.clear()

    def __len__(self) -> int:
        """How many idle programs are held."""
        self._take_in()
        with self._lock:
            return sum(len(p) for p in self._idle.values())


PROGRAMS = ProgramPool()
"""The process's pool, which embedded decision points use unless given another."""
