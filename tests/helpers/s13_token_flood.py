"""A real `pdx run` for the credential-flood tests: credentials, per-address clients, audit rows."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import server as real_server


class FloodServer(real_server.RealServer):
    """The real server with the readings the credential-flood attacks need."""

    def creds(self, name: str) -> dict[str, str]:
        data: dict[str, dict[str, str]] = json.loads(
            (self.home / "demo-credentials.json").read_text()
        )
        return data[name]

    def client(self, source: str) -> httpx.Client:
        """A client whose requests come from `source` (any 127/8 address is local on Linux)."""
        transport = httpx.HTTPTransport(local_address=source)
        return httpx.Client(base_url=self.url, transport=transport, timeout=60)

    def audit_rows(self, where: str = "1=1") -> list[sqlite3.Row]:
        db = sqlite3.connect(self.home / "pdx.db", timeout=30)
        db.row_factory = sqlite3.Row
        try:
            return list(db.execute(f"SELECT * FROM audit_records WHERE {where}"))  # noqa: S608
        finally:
            db.close()


@pytest.fixture
def flood_server(tmp_path: Path) -> Iterator[Callable[..., FloodServer]]:
    """Start real servers with extra environment; all are stopped after the test."""
    servers: list[FloodServer] = []

    def start(**extra: str) -> FloodServer:
        real = real_server.start_server(tmp_path / f"home-{len(servers)}", extra)
        server = FloodServer(real.proc, real.port, real.home, real.env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def token(c: httpx.Client, client_id: str, secret: str) -> httpx.Response:
    return c.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )


def at_once(n: int, send: Callable[[int], int]) -> list[int]:
    """Run `send(i)` for i < n on n threads released together; their results in order."""
    barrier = threading.Barrier(n)
    results: list[int] = [0] * n

    def run(i: int) -> None:
        barrier.wait(timeout=60)
        results[i] = send(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def burst_count(detail: str | None) -> int:
    """The `count=` of a failure-burst record's detail."""
    return int((detail or "").split("count=")[1].split()[0])
