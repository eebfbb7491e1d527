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
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NoReturn, Protocol

from sandbox import _worker_protocol as proto
from sandbox.errors import (
    ERRORS_BY_CODE,
    IsolationUnavailable,
    OperatorFailed,
    OutputTooLarge,
    SandboxCpuLimit,
    SandboxError,
    SandboxMemoryLimit,
    SandboxTimeout,
    UnknownOperator,
)

FailureReason = Literal[
    "memory-limit",
    "cpu-limit",
    "timeout",
    "operator-error",
    "isolation-unavailable",
    "output-too-large",
]

_REASON_ERRORS: dict[str, type[SandboxError]] = {
    "memory-limit": SandboxMemoryLimit,
    "cpu-limit": SandboxCpuLimit,
    "timeout": SandboxTimeout,
    "operator-error": OperatorFailed,
    "isolation-unavailable": IsolationUnavailable,
    "output-too-large": OutputTooLarge,
}

SANDBOX_UID = 65534
SCRATCH = Path("/scratch")
INPUT_ROOT = Path("/input")
_PACKAGE_DIR = Path(__file__).resolve().parent
_LOG_TAIL = 4096
_MEMORY_MARKERS = (b"MemoryError", b"std::bad_alloc", b"Cannot allocate memory", b"out of memory")


# -- what operators see -----------------------------------------------------------------------


@dataclass
class OperatorContext:
    """What an operator sees: its read-only inputs, its scratch dir and one request.

    `state` survives between requests of one session (for example a federated-learning
    node's parsed data between rounds) and dies with the process.
    """

    inputs: tuple[Path, ...]
    scratch: Path
    params: dict[str, Any]
    blobs: dict[str, bytes]
    state: dict[str, Any] = field(default_factory=dict)


class Operator(Protocol):
    """A vetted operator: called once per request inside the sandbox, returns the output."""

    def __call__(self, ctx: OperatorContext, /) -> bytes: ...


# -- limits and the registry --------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed process (CPU and memory for its whole life)."""

    cpu_seconds: int = 60
    memory_bytes: int = 2 << 30
    wall_seconds: float = 120.0
    """Per request, counted from when the request is sent (the first includes start-up)."""
    max_output_bytes: int = 512 << 20
    max_request_bytes: int = 256 << 20
    max_file_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        if self.cpu_seconds < 1 or self.memory_bytes < (64 << 20) or self.wall_seconds <= 0:
            raise ValueError("limits must be positive (memory at least 64 MiB)")
        if min(self.max_output_bytes, self.max_request_bytes, self.max_file_bytes) < 1:
            raise ValueError("size limits must be positive")


@dataclass(frozen=True)
class OperatorSpec:
    """One vetted operator: a stable name and the `module:function` that implements it."""

    name: str
    target: str
    description: str = ""
    limits: Limits = field(default_factory=Limits)
    code_root: Path | None = None
    """Extra read-only directory put on `sys.path` inside (test registries only)."""

    def __post_init__(self) -> None:
        module, sep, attr = self.target.partition(":")
        if not sep or not module or not attr.isidentifier():
            raise ValueError(f"operator target must be 'module:function', got {self.target!r}")


class OperatorRegistry(Mapping[str, OperatorSpec]):
    """An immutable name → operator table; the only way a request can choose code."""

    def __init__(self, specs: Sequence[OperatorSpec]) -> None:
        table: dict[str, OperatorSpec] = {}
        for spec in specs:
            if spec.name in table:
                raise ValueError(f"operator {spec.name!r} registered twice")
            table[spec.name] = spec
        self._specs = table

    def __getitem__(self, name: str) -> OperatorSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def spec(self, name: str) -> OperatorSpec:
        """The operator called `name`, or `UnknownOperator`."""
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownOperator(f"no vetted operator named {name!r}", operator=name) from None


# -- outcomes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SandboxResult:
    """A request that completed: `output` is exactly the bytes the operator returned."""

    operator: str
    output: bytes
    wall_seconds: float
    cpu_seconds: float | None = None
    ok: Literal[True] = True

    def unwrap(self) -> bytes:
        return self.output


@dataclass(frozen=True)
class SandboxFailure:
    """A request that did not complete, with a reason from a closed set.

    `code` and `detail` are safe for a client; `log_tail` is the end of the operator's
    stderr, for the platform's own log only (it may quote data the operator processed).
    """

    operator: str
    reason: FailureReason
    detail: str
    code: str
    extensions: dict[str, Any] = field(default_factory=dict)
    log_tail: str = ""
    ok: Literal[False] = False

    def error(self) -> SandboxError:
        cls = ERRORS_BY_CODE.get(self.code) or _REASON_ERRORS[self.reason]
        return cls(self.detail, operator=self.operator, reason=self.reason, **self.extensions)

    def unwrap(self) -> NoReturn:
        raise self.error()


SandboxOutcome = SandboxResult | SandboxFailure


def _failure(
    operator: str, reason: FailureReason, detail: str, code: str | None = None, **ext: Any
) -> SandboxFailure:
    return SandboxFailure(
        operator=operator,
        reason=reason,
        detail=detail,
        code=code or _REASON_ERRORS[reason].code,
        extensions=ext,
    )


# -- the sandbox --------------------------------------------------------------------------------

# Checks the properties, not just that bwrap started: only a loopback interface, the
# unprivileged uid, and a read-only root.
_PROBE_SCRIPT = """
import os, socket, sys
ok = [n for _, n in socket.if_nameindex()] == ["lo"] and os.getuid() == 65534
try:
    open("/probe", "w")
    ok = False
except OSError:
    pass
sys.exit(0 if ok else 3)
"""
_PROBE_LOCK = threading.Lock()
_PROBED: dict[tuple[str, str], str | None] = {}


class Sandbox:
    """Starts isolated workers for operators of one registry.

    `bwrap` and `prlimit` name the tools (looked up on PATH); `workdir` is where the
    per-run host directories (scratch, operator log) are created.
    """

    def __init__(
        self,
        registry: OperatorRegistry,
        *,
        bwrap: str = "bwrap",
        prlimit: str = "prlimit",
        python: str | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.registry = registry
        self._bwrap = shutil.which(bwrap) or bwrap
        self._prlimit = shutil.which(prlimit) or prlimit
        self._python = python or sys.executable
        self._workdir = workdir

    # availability ---------------------------------------------------------------------------

    def unavailable_reason(self) -> str | None:
        """Why isolation cannot be used on this host, or None when a probe run succeeded."""
        for tool in (self._bwrap, self._prlimit):
            if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
                return f"{os.path.basename(tool)} not found ({tool})"
        key = (self._bwrap, self._prlimit)
        with _PROBE_LOCK:
            if key not in _PROBED:
                reason = self._probe()
                if reason is not None:
                    # Not cached: a failure may be transient (EMFILE, a fork failing under
                    # load), and caching it disabled computations for the process's life.
                    return reason
                _PROBED[key] = None
            return _PROBED[key]

    def check(self) -> None:
        """Raise `IsolationUnavailable` unless isolated runs are possible here."""
        reason = self.unavailable_reason()
        if reason is not None:
            raise IsolationUnavailable(
                f"isolated execution unavailable, refusing to run unisolated: {reason}"
            )

    def _probe(self) -> str | None:
        cmd = [
            self._prlimit,
            "--core=0",
            "--",
            self._bwrap,
            *self._namespace_args(),
            *self._system_mounts(),
            "--remount-ro",
            "/",
            "--",
            self._python,
            "-I",
            "-S",
            "-c",
            _PROBE_SCRIPT,
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"probe failed: {exc}"
        if done.returncode == 3:
            return "probe ran but the namespaces were not effective"
        if done.returncode != 0:
            msg = done.stderr.decode(errors="replace").strip().splitlines()
            return f"probe exited {done.returncode}: {msg[-1] if msg else ''}"
        return None

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
        return SandboxSession(self, spec, [Path(p) for p in inputs], limits or spec.limits)

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

    # command line ---------------------------------------------------------------------------

    @staticmethod
    def _namespace_args() -> list[str]:
        return [
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_UID),
            "--cap-drop",
            "ALL",
            "--hostname",
            "pdx-sandbox",
            "--die-with-parent",
        ]

    def _system_mounts(self) -> list[str]:
        args: list[str] = []
        for d in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            p = Path(d)
            if p.is_symlink():
                args += ["--symlink", os.readlink(p), d]
            elif p.is_dir():
                args += ["--ro-bind", d, d]
        for f in ("/etc/ld.so.cache", "/etc/localtime"):
            args += ["--ro-bind-try", f, f]
        roots = {
            Path(sys.prefix).resolve(),
            Path(sys.base_prefix).resolve(),
            Path(self._python).resolve().parent.parent,
        }
        for root in _outermost(roots):
            if not _is_under(root, Path("/usr")):
                args += ["--ro-bind", str(root), str(root)]
        # The venv's python is a symlink into base_prefix: keep its own path valid too.
        venv_bin = Path(self._python).parent
        if not any(_is_under(venv_bin, r) for r in roots):
            args += ["--ro-bind", str(venv_bin), str(venv_bin)]
        return args

    def command(
        self,
        spec: OperatorSpec,
        inputs: Sequence[Path],
        scratch_host: Path,
        limits: Limits,
        out_fd: int,
    ) -> tuple[list[str], list[str]]:
        """The argv for one worker, and the in-sandbox paths of its inputs."""
        mounts = self._system_mounts()
        code_dirs = [_PACKAGE_DIR]
        if spec.code_root is not None:
            code_dirs.append(spec.code_root.resolve())
        for d in code_dirs:
            mounts += ["--ro-bind", str(d), str(d)]
        inside: list[str] = []
        for i, path in enumerate(inputs):
            target = INPUT_ROOT / str(i) / (path.name or "input")
            mounts += ["--ro-bind", str(path), str(target)]
            inside.append(str(target))
        mounts += ["--bind", str(scratch_host), str(SCRATCH)]
        mounts += ["--dev", "/dev", "--proc", "/proc", "--remount-ro", "/dev", "--remount-ro", "/"]
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(SCRATCH),
            "TMPDIR": str(SCRATCH),
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env_args: list[str] = ["--clearenv"]
        for k, v in env.items():
            env_args += ["--setenv", k, v]
        config = {
            "target": spec.target,
            "out_fd": out_fd,
            "inputs": inside,
            "scratch": str(SCRATCH),
            "max_request_bytes": limits.max_request_bytes,
            "code_roots": [str(spec.code_root.resolve())] if spec.code_root else [],
        }
        cpu = limits.cpu_seconds
        argv = [
            self._prlimit,
            f"--cpu={cpu}:{cpu + 2}",
            f"--as={limits.memory_bytes}:{limits.memory_bytes}",
            f"--fsize={limits.max_file_bytes}:{limits.max_file_bytes}",
            "--core=0:0",
            "--",
            self._bwrap,
            *self._namespace_args(),
            *env_args,
            *mounts,
            "--chdir",
            str(SCRATCH),
            "--",
            self._python,
            "-I",
            "-B",
            "-m",
            "sandbox._worker",
            json.dumps(config),
        ]
        return argv, inside


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _outermost(paths: set[Path]) -> list[Path]:
    ordered = sorted(paths, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for p in ordered:
        if not any(_is_under(p, k) for k in kept):
            kept.append(p)
    return kept


class SandboxSession:
    """One live worker: `call` sends a request and waits for its response.

    After any failure the worker is gone and every later call returns the same failure.
    `send`/`receive` split a call so several sessions (one per provider node) can work
    at the same time from one thread.
    """

    def __init__(
        self, sandbox: Sandbox, spec: OperatorSpec, inputs: list[Path], limits: Limits
    ) -> None:
        self.spec = spec
        self.limits = limits
        self._proc: subprocess.Popen[bytes] | None = None
        self._failure: SandboxFailure | None = None
        self._ready = False
        self._killed_for_timeout = False
        self._sent_at: float | None = None
        self._started = time.monotonic()
        self._out_r = -1
        self._rundir: Path | None = None
        self._log: Any = None
        reason = sandbox.unavailable_reason()
        if reason is not None:
            self._failure = _failure(
                spec.name,
                "isolation-unavailable",
                f"isolated execution unavailable, refusing to run unisolated: {reason}",
            )
            return
        for p in inputs:
            if not p.exists():
                raise FileNotFoundError(f"input not found: {p}")
        self._rundir = Path(tempfile.mkdtemp(prefix="pdx-sandbox-", dir=sandbox._workdir))
        scratch = self._rundir / "scratch"
        scratch.mkdir(mode=0o700)
        self._log = open(self._rundir / "operator.log", "w+b")  # noqa: SIM115
        out_r, out_w = os.pipe()
        argv, _ = sandbox.command(spec, [p.resolve() for p in inputs], scratch, limits, out_w)
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=self._log,
                stderr=self._log,
                pass_fds=(out_w,),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            os.close(out_r)
            os.close(out_w)
            self._failure = _failure(spec.name, "isolation-unavailable", f"cannot start: {exc}")
            self._cleanup()
            return
        finally:
            if self._proc is not None:
                os.close(out_w)
        self._out_r = out_r
        self._started = time.monotonic()
        assert self._proc.stdin is not None
        os.set_blocking(self._proc.stdin.fileno(), False)

    # public -----------------------------------------------------------------------------

    def call(
        self, params: Mapping[str, Any] | None = None, blobs: Mapping[str, bytes] | None = None
    ) -> SandboxOutcome:
        """Send one request and wait for its response (or the failure that prevented it)."""
        self.send(params, blobs)
        return self.receive()

    def send(
        self, params: Mapping[str, Any] | None = None, blobs: Mapping[str, bytes] | None = None
    ) -> None:
        """Send a request; the wall-clock limit for it starts now."""
        if self._failure is not None:
            return
        if self._sent_at is not None:
            raise RuntimeError("receive() the previous response before sending again")
        frame = proto.encode_request(dict(params or {}), dict(blobs or {}))
        if len(frame) > self.limits.max_request_bytes + proto.MAX_HEADER:
            raise ValueError("request exceeds max_request_bytes")
        self._sent_at = time.monotonic()
        assert self._proc is not None and self._proc.stdin is not None
        fd = self._proc.stdin.fileno()
        view = memoryview(frame)
        deadline = self._sent_at + self.limits.wall_seconds
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail_timeout()
                return
            _, writable, _ = select.select([], [fd], [], remaining)
            if not writable:
                continue
            try:
                n = os.write(fd, view[: 1 << 16])
            except BlockingIOError:
                continue
            except BrokenPipeError:
                # The worker died; receive() reads what it said (if anything) and why.
                return
            view = view[n:]

    def receive(self) -> SandboxOutcome:
        """Wait for the response to the last request."""
        if self._failure is not None:
            return self._failure
        if self._sent_at is None:
            raise RuntimeError("nothing was sent")
        sent_at, deadline = self._sent_at, self._sent_at + self.limits.wall_seconds
        try:
            header, body = self._read_frame(deadline)
            if not self._ready:
                if not header.get("ready"):
                    return self._fail_from_header(header)
                self._ready = True
                header, body = self._read_frame(deadline)
        except _Timeout:
            return self._fail_timeout()
        except _Eof:
            return self._fail_dead()
        except proto.ProtocolError as exc:
            reason: FailureReason = (
                "output-too-large" if "exceeds the limit" in str(exc) else "operator-error"
            )
            self._failure = _failure(self.spec.name, reason, str(exc))
            self._terminate()
            return self._failure
        self._sent_at = None
        if header.get("ok") is True:
            cpu = header.get("cpu_s")
            return SandboxResult(
                operator=self.spec.name,
                output=body,
                wall_seconds=time.monotonic() - sent_at,
                cpu_seconds=float(cpu) if isinstance(cpu, int | float) else None,
            )
        return self._fail_from_header(header)

    def close(self) -> None:
        """Ask the worker to exit (EOF on its stdin), reap it and delete its scratch."""
        if self._proc is not None and self._proc.returncode is None:
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            self._reap(timeout=5.0)
        self._cleanup()

    def __enter__(self) -> SandboxSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # internals ----------------------------------------------------------------------------

    def _read_exact(self, n: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        remaining = n
        while remaining:
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise _Timeout
            readable, _, _ = select.select([self._out_r], [], [], wait)
            if not readable:
                continue
            chunk = os.read(self._out_r, min(remaining, 1 << 20))
            if not chunk:
                raise _Eof
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _read_frame(self, deadline: float) -> tuple[dict[str, Any], bytes]:
        header_len = proto.parse_header_len(self._read_exact(4, deadline))
        header = proto.parse_header(self._read_exact(header_len, deadline))
        body_len = proto.parse_body_len(self._read_exact(8, deadline), self.limits.max_output_bytes)
        body = self._read_exact(body_len, deadline)
        return header, body

    def _fail_from_header(self, header: dict[str, Any]) -> SandboxFailure:
        reason: FailureReason = "operator-error"
        if header.get("reason") == "memory-limit":
            reason = "memory-limit"
        elif header.get("reason") == "cpu-limit":
            reason = "cpu-limit"
        ext = header.get("extensions")
        self._terminate()
        self._failure = SandboxFailure(
            operator=self.spec.name,
            reason=reason,
            detail=str(header.get("detail", "operator failed")),
            code=str(header.get("code") or _REASON_ERRORS[reason].code),
            extensions=ext if isinstance(ext, dict) else {},
            log_tail=self._log_tail(),
        )
        return self._failure

    def _fail_timeout(self) -> SandboxFailure:
        self._killed_for_timeout = True
        self._terminate()
        self._failure = SandboxFailure(
            operator=self.spec.name,
            reason="timeout",
            detail=f"wall-clock limit of {self.limits.wall_seconds:g} s reached",
            code=SandboxTimeout.code,
            log_tail=self._log_tail(),
        )
        return self._failure

    def _fail_dead(self) -> SandboxFailure:
        """The worker exited without a response: tell why from its status and log."""
        status = self._reap(timeout=5.0)
        alive = time.monotonic() - self._started
        log = self._log_bytes()
        tail = log[-_LOG_TAIL:].decode(errors="replace")
        signum: int | None = None
        if status is not None and status > 128:
            signum = status - 128  # bwrap reports a signalled child as 128 + signal
        elif status is not None and status < 0:
            signum = -status
        reason: FailureReason
        if not self._ready and b"bwrap:" in log:
            reason, detail = "isolation-unavailable", "bubblewrap could not set up the sandbox"
        elif (
            signum == signal.SIGXCPU
            or b"_CpuLimit" in log
            or (
                # A SIGKILL we did not send is the hard RLIMIT_CPU (soft SIGXCPU is caught by
                # the worker) once the worker has lived as long as its CPU allowance; bwrap
                # reports the exit through a pipe without reaping, so rusage cannot tell.
                signum == signal.SIGKILL and alive >= 0.9 * self.limits.cpu_seconds
            )
        ):
            reason, detail = "cpu-limit", f"CPU-time limit of {self.limits.cpu_seconds} s reached"
        elif any(m in log for m in _MEMORY_MARKERS) or signum == signal.SIGKILL:
            # RLIMIT_AS makes allocations fail (MemoryError, std::bad_alloc); an earlier
            # SIGKILL is the kernel's OOM killer.
            reason, detail = "memory-limit", "memory limit reached"
        else:
            reason = "operator-error"
            detail = (
                f"worker killed by signal {signum}"
                if signum
                else f"worker exited with status {status}"
            )
        self._failure = SandboxFailure(
            operator=self.spec.name,
            reason=reason,
            detail=detail,
            code=_REASON_ERRORS[reason].code,
            log_tail=tail,
        )
        return self._failure

    def _terminate(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap(timeout=5.0)

    def _reap(self, timeout: float) -> int | None:
        """Wait for the worker (killing its group after `timeout`); return its exit status."""
        proc = self._proc
        if proc is None:
            return None
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        return proc.returncode

    def _log_bytes(self) -> bytes:
        if self._log is None:
            return b""
        self._log.flush()
        self._log.seek(0)
        data: bytes = self._log.read()
        return data

    def _log_tail(self) -> str:
        return self._log_bytes()[-_LOG_TAIL:].decode(errors="replace")

    def _cleanup(self) -> None:
        if self._out_r >= 0:
            os.close(self._out_r)
            self._out_r = -1
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._rundir is not None:
            shutil.rmtree(self._rundir, ignore_errors=True)
            self._rundir = None

    def __del__(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class _Timeout(Exception):
    pass


class _Eof(Exception):
    pass


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
