"""The real `pdx` command in child processes forked from a warm interpreter.

A `pdx` verb that opens the platform spends about 4 s importing it before it does anything;
a test that runs the command ten times paid that ten times. Here one server process per
pytest process imports the platform's packages once (imports only: no settings, no engine,
no test state) and forks a child for each command. The child is a process of its own: its
own environment (replaced whole, as `subprocess.run(env=...)` does), working directory,
`sys.path` from that environment's PYTHONPATH, stdin from /dev/null, its stdout and stderr
captured, and it runs `gateway.cli` as `python -m gateway.cli` does, exit status included.

PDX_TEST_COLD_CLI=1 runs `python -m gateway.cli` from scratch in every child instead.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
# What a verb imports when it runs (the platform, backups, key management): paid once.
PRELOAD = ("gateway.cli", "gateway.platform", "exchange.backup", "crypto.backup")

_lock = threading.Lock()
_server: subprocess.Popen[str] | None = None


def pdx(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m gateway.cli *argv` in a child process with exactly `env`."""
    cmd = [sys.executable, "-m", "gateway.cli", *argv]
    if os.environ.get("PDX_TEST_COLD_CLI") == "1":
        return subprocess.run(
            cmd, env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
    with _lock, tempfile.TemporaryDirectory(prefix="pdx-cli-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        out.touch()
        err.touch()
        request = {
            "argv": list(argv),
            "env": dict(env),
            "cwd": str(cwd or Path.cwd()),
            "stdout": str(out),
            "stderr": str(err),
        }
        status = _run(request, timeout, cmd)
        return subprocess.CompletedProcess(cmd, status, out.read_text(), err.read_text())


def _run(request: dict[str, Any], timeout: float, cmd: list[str]) -> int:
    server = _started()
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(json.dumps(request) + "\n")
    server.stdin.flush()
    pid = int(_line(server.stdout, 30))
    try:
        return int(_line(server.stdout, timeout))
    except subprocess.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
        _line(server.stdout, 30)  # the server reaps it and reports
        raise subprocess.TimeoutExpired(cmd, timeout) from None


def _line(stream: IO[str], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        raise subprocess.TimeoutExpired("pdx", timeout)
    line = stream.readline()
    if not line:
        raise RuntimeError("the warm pdx server exited")
    return line


def _started() -> subprocess.Popen[str]:
    global _server
    if _server is None or _server.poll() is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "sdk")])}
        _server = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.warm_cli"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=REPO,
            text=True,
            bufsize=1,
        )
        atexit.register(_stop, _server)
    return _server


def _stop(server: subprocess.Popen[str]) -> None:
    if server.stdin is not None:
        server.stdin.close()  # end of input: the server exits
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# -- the server side ------------------------------------------------------------------


def _serve() -> None:
    """Import once, then fork a child per request line; report its pid, then its status."""
    import importlib

    # sys.path as the interpreter built it: [cwd, *PYTHONPATH, *the installation's paths].
    own = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    assert sys.path[1 : 1 + len(own)] == own, (sys.path, own)
    base = sys.path[1 + len(own) :]
    for name in PRELOAD:
        importlib.import_module(name)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request, base)  # never returns: the child exits as the command does
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


def _child(request: dict[str, Any], base: list[str]) -> None:
    import runpy

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    paths = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [request["cwd"], *paths, *base]
    for fd, path, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, request["stdout"], os.O_WRONLY),
        (2, request["stderr"], os.O_WRONLY),
    ):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    sys.argv = [str(REPO / "gateway" / "cli" / "__main__.py"), *request["argv"]]
    runpy.run_module("gateway.cli", run_name="__main__", alter_sys=True)
    sys.exit(0)


if __name__ == "__main__":
    _serve()
