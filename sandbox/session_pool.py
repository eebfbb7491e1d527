"""A sandbox session's process pool: the sandbox's cores for a join party's EC and Paillier work.

One pool per party session, opened when the input is large enough to pay for it (`MIN_ROWS`)
and shut down when the party's last step is done, when a step fails, and in any case when
the sandbox worker leaves its request loop (`close_all`, called by `sandbox._worker`).

The workers are forked from the sandbox worker (the only thread there), so they need no
interpreter start and no import; they inherit its namespaces and its `prlimit`s, which apply
per process: each worker has the same address-space and CPU-time limits as the sandbox worker
itself (`sandbox._bwrap`, the operator's `Limits`). A worker's own allocation is one slice of
a batch and its Paillier table (~16 MB at 2048 bits). Tasks and results travel over one pair
of pipes per worker, not `multiprocessing` queues: those need POSIX semaphores, i.e. a
writable /dev/shm, which the sandbox deliberately does not have. `gc` is frozen around the
fork so the workers' collector does not copy the parent's pages.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future
from multiprocessing.connection import Connection, Pipe
from typing import Any

from sandbox.psi import EcEngine

MAX_WORKERS = 4
MIN_ROWS = 1024
"""Below this many rows a step stays in-process. Measured (value.pairs, 2048-bit key, two
cores): the pool adds ~0.25 s CPU (each worker's Paillier table); it breaks even in wall time
near 300-500 rows and halves it from ~2000 (2048 rows: 5.7 s → 2.8 s), so 1024 keeps its
CPU overhead near 10% on a busy host."""

_OPEN: list[SessionPool] = []


def cores() -> int:
    """The cores this process may run on (its affinity), at most `MAX_WORKERS`."""
    return min(MAX_WORKERS, len(os.sched_getaffinity(0)))


class _Task(Future[Any]):
    """A task on one worker; `result()` reads that worker's replies up to this one."""

    def __init__(self, pool: _ForkExecutor, worker: int) -> None:
        super().__init__()
        self._pool, self._worker = pool, worker

    def result(self, timeout: float | None = None) -> Any:
        while not self.done():
            self._pool._pump(self._worker)
        return super().result(timeout)


def _serve(tasks: Connection, replies: Connection) -> None:
    """A worker's loop: run each (fn, args) in order, until its task pipe closes."""
    while True:
        try:
            fn, args = tasks.recv()
        except EOFError:
            return
        try:
            reply: tuple[bool, Any] = (True, fn(*args))
        except BaseException as exc:  # the caller's `result()` raises it
            reply = (False, exc)
        replies.send(reply)


class _ForkExecutor(Executor):
    """`size` forked workers, each fed in order through its own pipes; tasks round-robin."""

    def __init__(self, size: int) -> None:
        self._ends: list[tuple[Connection, Connection]] = []
        self._pending: list[list[_Task]] = []
        self.pids: list[int] = []
        self._next = 0
        gc.freeze()
        try:
            for _ in range(size):
                task_r, task_w = Pipe(duplex=False)
                reply_r, reply_w = Pipe(duplex=False)
                pid = os.fork()
                if pid == 0:  # the worker: only its own two ends stay open
                    code = 0
                    try:
                        for r, w in self._ends:
                            r.close()
                            w.close()
                        task_w.close()
                        reply_r.close()
                        _serve(task_r, reply_w)
                    except BaseException:
                        code = 1
                    finally:
                        os._exit(code)
                task_r.close()
                reply_w.close()
                self._ends.append((reply_r, task_w))
                self._pending.append([])
                self.pids.append(pid)
        finally:
            gc.unfreeze()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if kwargs or not self._ends:
            raise RuntimeError("a closed pool, or keyword arguments")
        worker = self._next % len(self._ends)
        self._next += 1
        task = _Task(self, worker)
        self._ends[worker][1].send((fn, args))
        self._pending[worker].append(task)
        return task

    def _pump(self, worker: int) -> None:
        try:
            ok, value = self._ends[worker][0].recv()
        except (EOFError, OSError):
            raise RuntimeError("a session pool worker died") from None
        task = self._pending[worker].pop(0)
        if ok:
            task.set_result(value)
        else:
            task.set_exception(value)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        ends, self._ends = self._ends, []
        for r, w in ends:
            w.close()  # EOF: the worker finishes its task and exits
            r.close()
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


class SessionPool:
    """A session's forked workers, alive until `close`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._executor: _ForkExecutor | None = _ForkExecutor(size)
        self.pids = tuple(self._executor.pids)
        _OPEN.append(self)

    @property
    def executor(self) -> Executor | None:
        return self._executor

    def close(self) -> None:
        """Stop and reap every worker (idempotent)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown()
        if self in _OPEN:
            _OPEN.remove(self)


def close_all() -> None:
    """Close every pool still open in this process (the sandbox worker's exit)."""
    for pool in list(_OPEN):
        pool.close()


class PartyEngine(EcEngine):
    """An `EcEngine` that starts in-process and moves onto a session pool once one opens."""

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
