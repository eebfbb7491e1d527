"""The real server as a subprocess: `pdx run` on a free loopback port, for socket-level tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.net import free_port

PDX = [sys.executable, "-m", "gateway.cli"]


@dataclass
class RealServer:
    """A running `pdx run`: its process, port, home and environment."""

    proc: subprocess.Popen[str]
    port: int
    home: Path
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout)


def start_server(
    home: Path, extra_env: Mapping[str, str] | None = None, *, deadline_s: float = 90
) -> RealServer:
    """Start `pdx run` with an embedded store in `home`; return once /healthz answers 200.

    Fails the test with the server's last output when it exits or does not come up.
    """
    port = free_port()
    inherited = dict(os.environ)
    inherited.pop("PDX_DATABASE_URL", None)  # the embedded store unless `extra_env` names one
    env = {
        **inherited,
        "PDX_HOME": str(home),
        "PDX_PORT": str(port),
        "PDX_HOST": "127.0.0.1",
        **(extra_env or {}),
    }
    proc = subprocess.Popen(
        [*PDX, "run", "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = RealServer(proc, port, home, env)
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"server did not start: {out[-2000:]}")
        time.sleep(0.2)
