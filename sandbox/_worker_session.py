"""One live sandboxed worker process: requests in, framed responses out, limits enforced."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sandbox import _worker_protocol as proto
from sandbox._bwrap import _Launcher
from sandbox._isolation_model import (
    _REASON_ERRORS,
    FailureReason,
    Limits,
    OperatorSpec,
    SandboxFailure,
    SandboxOutcome,
    SandboxResult,
    _failure,
)
from sandbox.errors import SandboxTimeout

_LOG_TAIL = 4096
_MEMORY_MARKERS = (b"MemoryError", b"std::bad_alloc", b"Cannot allocate memory", b"out of memory")


class SandboxSession:
    """One live worker: `call` sends a request and waits for its response.

    After any failure the worker is gone and every later call returns the same failure.
    `send`/`receive` split a call so several sessions (one per provider node) can work
    at the same time from one thread.
    """

    def __init__(
        self, sandbox: _Launcher, spec: OperatorSpec, inputs: list[Path], limits: Limits
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

    def __exit__(self, *exc_info: object) -> None:
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
