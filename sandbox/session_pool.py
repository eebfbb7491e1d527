"""A sandbox session's process pool: the sandbox's cores for a join party's EC and Paillier work.

One pool per party session, opened when the input is large enough to pay for it (`MIN_ROWS`)
and shut down when the party's last step is done, when a step fails, and in any case when
the sandbox worker leaves its request loop (`close_all`, called by `sandbox._worker`).

The workers are forked from the sandbox worker (the only thread there), so they need no
interpreter start, no import and no resource tracker; they inherit its namespaces and its
`prlimit`s, which apply per process: each worker has the same address-space and CPU-time
limits as the sandbox worker itself (`sandbox._bwrap`, the operator's `Limits`). A worker's
own allocation is one slice of a batch and its Paillier table (~16 MB at 2048 bits). `gc` is
frozen around the fork so the workers' collector does not copy the parent's pages.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from crypto.psi_ec import PsiGroup
from sandbox.psi import EcEngine

MAX_WORKERS = 4
MIN_ROWS = 1024
"""Below this many rows a step stays in-process: forking and each worker's Paillier table
(~0.3 s) cost more than the second core saves (measured: see the branch's commit)."""

_OPEN: list[SessionPool] = []


def cores() -> int:
    """The cores this process may run on (its affinity), at most `MAX_WORKERS`."""
    return min(MAX_WORKERS, len(os.sched_getaffinity(0)))


class SessionPool:
    """A forked `ProcessPoolExecutor` of `size` workers, alive until `close`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._executor: ProcessPoolExecutor | None = ProcessPoolExecutor(
            size, mp_context=multiprocessing.get_context("fork")
        )
        gc.freeze()
        try:  # forks every worker now, while gc is frozen (fork: all at the first submit)
            self._executor.submit(os.getpid).result()
        finally:
            gc.unfreeze()
        self.pids = tuple(self._executor._processes)
        _OPEN.append(self)

    @property
    def executor(self) -> ProcessPoolExecutor | None:
        return self._executor

    def close(self) -> None:
        """Stop and reap every worker (idempotent)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        if self in _OPEN:
            _OPEN.remove(self)


def close_all() -> None:
    """Close every pool still open in this process (the sandbox worker's exit)."""
    for pool in list(_OPEN):
        pool.close()


class PartyEngine(EcEngine):
    """An `EcEngine` that starts in-process and moves onto a session pool once one opens."""

    def __init__(self, group: PsiGroup) -> None:
        super().__init__(group)

    def attach(self, pool: SessionPool | None) -> None:
        """Run later batches on `pool`'s workers (in-process again with None or a closed pool)."""
        executor = pool.executor if pool is not None else None
        self._executor = executor
        self._split = pool.size if executor is not None and pool is not None else 1


def pooled(state: dict[str, object], rows: int) -> SessionPool | None:
    """The session's pool, opened now if `rows` is large enough and there are cores for it.

    `state["workers"]` records the pool's size (0: in-process), `state["pool"]` the pool.
    """
    pool = state.get("pool")
    if isinstance(pool, SessionPool):
        return pool
    state.setdefault("workers", 0)
    size = cores()
    if rows < MIN_ROWS or size < 2:
        return None
    pool = state["pool"] = SessionPool(size)
    state["workers"] = size
    return pool


def release(state: dict[str, object]) -> None:
    """Shut the session's pool down, if it has one (its last heavy step is done)."""
    pool = state.pop("pool", None)
    if isinstance(pool, SessionPool):
        pool.close()
