"""Runs one vetted operator for one party in an isolated, resource-limited child process.

Isolation tool: bubblewrap (`bwrap`), wrapped in util-linux `prlimit`.

Why bubblewrap rather than `unshare -n`: `unshare -n` gives a network namespace and
nothing else; the read-only view of the inputs, the private scratch directory and the
absence of everything else (keys under `$PDX_HOME`, other providers' files) would then
need a hand-built mount namespace (`unshare -m` + a sequence of bind/remount calls run
as root before dropping privileges). bubblewrap does exactly that, declaratively and in
one exec, and is what Flatpak uses for the same job. Each child gets:

* new user, network, PID, IPC, UTS and cgroup namespaces (`--unshare-all
  --unshare-user`), running as uid/gid 65534 with no capabilities, unable to create
  further user namespaces (`--disable-userns`). The network namespace has only its own
  loopback, so `connect()` to any host address fails.
* a root file system that is an empty tmpfs, remounted read-only at the end, holding only
  read-only binds of `/usr` (and the `/bin`, `/lib*` symlinks), the Python installation,
  the virtualenv and the `sandbox` package; each input file read-only under `/input/N/`;
  a fresh `/proc` for its PID namespace and a minimal `/dev` (remounted read-only:
  `/dev/null` stays writable, `/dev/shm` does not). The only writable directory is
  `/scratch`, a private per-run host directory deleted afterwards. `/etc`, `/home`,
  `/root`, `/tmp`, `/var`, `/run` and the platform home are absent.
* `prlimit` applies RLIMIT_CPU (soft = limit, SIGXCPU; hard = limit + 2, SIGKILL),
  RLIMIT_AS (address space), RLIMIT_FSIZE (largest file it may write) and RLIMIT_CORE=0
  before bwrap starts, so the limits cover everything inside and cannot be raised there
  (raising a hard limit needs CAP_SYS_RESOURCE in the initial user namespace).
* the parent enforces the wall-clock limit and kills the whole process group on breach
  (`start_new_session` makes bwrap a group leader; bwrap's `--new-session` is not needed
  because no terminal is ever attached, which is what defeats TIOCSTI; `--die-with-parent`
  covers a crashing parent).

Output leaves only through a dedicated pipe as length-prefixed frames of bytes
(`sandbox._worker_protocol`), read by the caller (coordinator or release gate). The
operator's stdout and stderr go to a log file kept for the platform's own log.

If `bwrap` or `prlimit` is missing, or a probe run cannot create the namespaces (for
example user namespaces are disabled), every run fails with `isolation-unavailable`
(`IsolationUnavailable` from `unwrap()`); nothing ever runs unisolated.

Operators are named, never sent: a request names an entry of a fixed `OperatorRegistry`
(`sandbox.operators.REGISTRY` in production), whose `target` is a `module:function` of
vetted code. Tests may build their own registry; requests cannot.

Not covered: RLIMIT_NPROC is not set (inside the user namespace the uid maps to the
caller's, whose process count is shared with the host), so a fork bomb is bounded by the
PID namespace dying with the wall-clock kill rather than by a process cap; RLIMIT_CPU is
per process, so CPU limits hold per process in the tree. A cgroup (memory.max,
pids.max, cpu.max) would tighten both and is the next step where systemd is available.

Layout: the operator's view, limits, registry and outcomes are in
`sandbox._isolation_model`, the command line and the probe in `sandbox._bwrap`, one live
worker in `sandbox._worker_session`. Import the names from here: the modules behind them
may move.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sandbox._bwrap import INPUT_ROOT, SANDBOX_UID, SCRATCH, _Launcher
from sandbox._isolation_model import (
    FailureReason,
    Limits,
    Operator,
    OperatorContext,
    OperatorRegistry,
    OperatorSpec,
    SandboxFailure,
    SandboxOutcome,
    SandboxResult,
)
from sandbox._worker_session import SandboxSession

__all__ = [
    "INPUT_ROOT",
    "SANDBOX_UID",
    "SCRATCH",
    "FailureReason",
    "Limits",
    "Operator",
    "OperatorContext",
    "OperatorRegistry",
    "OperatorSpec",
    "Sandbox",
    "SandboxFailure",
    "SandboxOutcome",
    "SandboxResult",
    "SandboxSession",
    "run_parallel",
]


class Sandbox(_Launcher):
    """Starts isolated workers for operators of one registry.

    `bwrap` and `prlimit` name the tools (looked up on PATH); `workdir` is where the
    per-run host directories (scratch, operator log) are created.
    """

    # running --------------------------------------------------------------------------------

    def open_session(
        self,
        operator: str,
        inputs: Sequence[Path] = (),
        *,
        limits: Limits | None = None,
    ) -> SandboxSession:
        """Start a worker for `operator` over `inputs`; send it requests with `call`.

        Create sessions in a thread that outlives them: `--die-with-parent` is tied to
        the creating thread (PR_SET_PDEATHSIG).
        """
        spec = self.registry.spec(operator)
        return self._session(spec, [Path(p) for p in inputs], limits)

    def _session(
        self, spec: OperatorSpec, inputs: list[Path], limits: Limits | None
    ) -> SandboxSession:
        """Where `open_session` starts the worker of a known operator: here, in bubblewrap."""
        return SandboxSession(self, spec, inputs, limits or spec.limits)

    def run(
        self,
        operator: str,
        inputs: Sequence[Path] = (),
        params: Mapping[str, Any] | None = None,
        blobs: Mapping[str, bytes] | None = None,
        *,
        limits: Limits | None = None,
    ) -> SandboxOutcome:
        """One request in a fresh worker: start, call once, tear down."""
        with self.open_session(operator, inputs, limits=limits) as session:
            return session.call(params, blobs)


def run_parallel(
    sandbox: Sandbox,
    jobs: Sequence[tuple[str, Sequence[Path], Mapping[str, Any], Mapping[str, bytes]]],
    *,
    limits: Limits | None = None,
) -> list[SandboxOutcome]:
    """Run several one-shot requests at once (one worker each), in order of `jobs`."""
    sessions: list[SandboxSession] = []
    try:
        for op, inputs, _, _ in jobs:
            sessions.append(sandbox.open_session(op, inputs, limits=limits))
        for session, (_, _, params, blobs) in zip(sessions, jobs, strict=True):
            session.send(params, blobs)
        return [s.receive() for s in sessions]
    finally:
        for s in sessions:
            s.close()
