"""Helpers for the platform's witness and anchoring wiring (issue 19): subprocesses and polling."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from tests.helpers.net import free_port

PDX = [sys.executable, "-m", "gateway.cli"]
GANACHE = Path(os.environ.get("PDX_GANACHE", "/work/ganache/node_modules/.bin/ganache"))
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 30.0) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextmanager
def pdx_witness(
    workdir: Path, name: str, log_key: str, env: dict[str, str], *, port: int | None = None
) -> Iterator[tuple[str, str]]:
    """`pdx witness` as its own process on a loopback port: (URL prefix, verifier key).

    Its key, state and output (`witness_log`) are files in `workdir`, so a second start
    is the same witness and a test can read what it logged.
    """
    port = port or free_port()
    stem = workdir / name.replace("/", "_")
    output = witness_log(workdir, name)
    offset = output.stat().st_size if output.exists() else 0  # this start's lines only
    with output.open("a") as sink:
        proc = subprocess.Popen(
            [*PDX, "witness", "--name", name, "--log", log_key, "--port", str(port)]
            + ["--key", f"{stem}.key", "--state", f"{stem}.json"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def started() -> str | None:
        if proc.poll() is not None:
            pytest.fail(f"pdx witness exited: {output.read_text()}")
        text = output.read_text()[offset:]
        return text if f"listening on http://127.0.0.1:{port}" in text else None

    try:
        text = wait_for("pdx witness", started)
        key = [line for line in text.splitlines() if line.startswith("pdx witness ")][0]
        yield f"http://127.0.0.1:{port}", key.split(" ", 2)[2].strip()
    finally:
        _stop(proc)


def witness_log(workdir: Path, name: str) -> Path:
    return workdir / (name.replace("/", "_") + ".log")


@contextmanager
def ganache_node() -> Iterator[str]:
    """A separate ganache JSON-RPC node on a loopback port (as tests/test_ledger_anchor.py)."""
    from ledger.anchor import connect

    exe = str(GANACHE) if GANACHE.exists() else shutil.which("ganache")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("ganache is not installed (.ci/run installs it into /work/ganache)")
        pytest.skip("ganache not installed; set PDX_GANACHE")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--server.host", "127.0.0.1", "--server.port", str(port), "--logging.quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail("ganache exited")
        try:
            return bool(connect(url, timeout_s=2).is_connected())
        except Exception:
            return False

    try:
        wait_for("ganache", up, 60)
        yield url
    finally:
        _stop(proc)


@contextmanager
def pdx_run(env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`pdx run` (uvicorn, the real lifespan) on a free port; its URL once /healthz answers."""
    import httpx

    port = free_port()
    env = {**env, "PDX_PORT": str(port), "PDX_HOST": "127.0.0.1"}
    output = Path(env["PDX_HOME"]).parent / f"pdx-run-{port}.log"  # a file: a pipe could fill
    with output.open("w") as sink:
        proc = subprocess.Popen(
            [*PDX, "run", "--log-level", "warning"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"pdx run exited: {output.read_text()[-3000:]}")
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for("pdx run", healthy, 90)
        yield url, proc
    finally:
        _stop(proc)
