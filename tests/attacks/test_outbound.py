"""Attacks on the platform's connections to provider nodes, and on node-held data at rest."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from crypto.kms import KeyManager
from crypto.roles import KeyActor, KeyRole
from gateway.app import create_app
from gateway.platform import Platform, build_platform, initialise
from gateway.settings import Settings
from sandbox.errors import OutboundRefused
from sandbox.outbound import OutboundPolicy, pinned_session
from tests.conftest import EXAMPLE_CSV, login
from tests.helpers.api import compute_client
from tests.helpers.server import start_server
from tests.test_api_computations import wait_for
from tests.test_api_contracts import active_contract, measure_csv, register_dataset
from tests.test_api_datasets import metadata

PDX = [sys.executable, "-m", "gateway.cli"]
PURPOSE = "readmission risk research"


# -- peers: a black hole, a closed port, a plain web server -----------------------------------


class BlackHole:
    """A port that accepts connections and never answers (until closed)."""

    def __init__(self, *, accept: bool = True) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self._held: list[socket.socket] = []
        if accept:
            threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._held.append(conn)
            self.accepted.set()

    def saw_connection(self) -> bool:
        """For a non-accepting hole: whether anything is waiting in its backlog."""
        self.sock.setblocking(False)
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True

    def close(self) -> None:
        for c in self._held:
            c.close()
        self.sock.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there now: connections are refused


class _NotADatasite(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"<html>an ordinary web server</html>"
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def web_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotADatasite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def node_body(url: str) -> dict[str, Any]:
    return {"kind": "http", "url": url, "email": "coordinator@pdx.dev", "password": "pw-4567-x"}


def without_ids(body: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in body.items() if k != "request_id"}, sort_keys=True)


# -- (a) a node that never answers does not freeze the platform's writes ----------------------


@pytest.fixture
def loopback_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The real server (uvicorn subprocess) whose deployment allows nodes on loopback."""
    server = start_server(
        tmp_path / "home",
        {
            "PDX_NODE_ALLOW_NETWORKS": "127.0.0.0/8",
            "PDX_NODE_CONNECT_TIMEOUT_MS": "2000",
            "PDX_NODE_READ_TIMEOUT_MS": "10000",
            "PDX_NODE_PROBE_TIMEOUT_MS": "10000",
        },
    )
    try:
        creds = json.loads((server.home / "demo-credentials.json").read_text())
        yield server.url, creds
    finally:
        server.stop()


def _token(url: str, c: dict[str, Any], timeout: float) -> httpx.Response:
    return httpx.post(
        url + "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": c["client_id"],
            "client_secret": c["client_secret"],
        },
        timeout=timeout,
    )


@pytest.mark.e2e
def test_a_silent_node_does_not_freeze_writes(
    loopback_server: tuple[str, dict[str, Any]],
) -> None:
    url, creds = loopback_server
    issued = _token(url, creds["provider-transport"], 30).json()
    prov = {"Authorization": f"Bearer {issued['access_token']}"}
    hole = BlackHole()
    answer: list[httpx.Response | BaseException] = []

    def register() -> None:
        try:
            answer.append(
                httpx.put(
                    url + "/v1/nodes/me",
                    headers=prov,
                    json=node_body(f"http://127.0.0.1:{hole.port}"),
                    timeout=60,
                )
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            answer.append(exc)

    started = time.monotonic()
    pending = threading.Thread(target=register, daemon=True)
    pending.start()
    try:
        assert hole.accepted.wait(30), "the platform never connected to the node"
        # While the registration waits on the silent node: a token, and another write.
        token = _token(url, creds["provider-health"], 8)
        assert token.status_code == 200, token.text
        other = {"Authorization": f"Bearer {token.json()['access_token']}"}
        files = {
            "metadata": (None, metadata("silent-node trips"), "application/json"),
            "file": ("data.csv", EXAMPLE_CSV.read_bytes(), "text/csv"),
        }
        write = httpx.post(url + "/v1/datasets", headers=other, files=files, timeout=8)
        assert write.status_code == 201, write.text
        assert pending.is_alive(), "the writes were meant to run while the node was silent"
        pending.join(40)
        elapsed = time.monotonic() - started
    finally:
        hole.close()
    assert answer and isinstance(answer[0], httpx.Response), answer
    r = answer[0]
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("/node-unreachable")
    assert elapsed < 25  # the probe deadline (10 s), not the socket's lifetime


# -- (b) forbidden addresses are refused before any connection --------------------------------


def test_internal_addresses_are_refused_without_connecting(
    api: TestClient, creds: dict[str, Any]
) -> None:
    prov = login(api, creds, "provider-transport")
    hole = BlackHole(accept=False)  # listens, never accepts: a connection would queue
    try:
        urls = [
            f"http://127.0.0.1:{hole.port}",
            f"http://localhost:{hole.port}/",  # a name that resolves to loopback
            f"http://127.1.2.3:{hole.port}",
            f"http://[::1]:{hole.port}",
            f"http://[::ffff:127.0.0.1]:{hole.port}",
            f"http://0.0.0.0:{hole.port}",
            "http://10.1.2.3:8080",
            "http://172.16.0.5",
            "http://192.168.1.10:443",
            "http://100.64.0.1",
            "http://169.254.169.254/latest/meta-data/",  # cloud metadata
            "http://[fd00:ec2::254]/latest/meta-data/",
            "http://169.254.10.10",  # link-local
            "http://[fe80::1]:80",
            "http://[fc00::1]",  # ULA
            "http://224.0.0.1",  # multicast
        ]
        bodies = set()
        for u in urls:
            t0 = time.monotonic()
            r = api.put("/v1/nodes/me", headers=prov, json=node_body(u))
            assert r.status_code == 422, (u, r.text)
            assert r.json()["type"] == "https://pdx.dev/problems/node-address-refused", u
            assert time.monotonic() - t0 < 5, u  # refused at once, no timeout waited out
            bodies.add(without_ids(r.json()))
        assert len(bodies) == 1, bodies
        assert not hole.saw_connection()
    finally:
        hole.close()
    # Nothing was registered.
    assert api.get("/v1/nodes", headers=prov).json()["items"] == []


def test_every_resolved_address_is_checked_and_the_checked_one_is_used(
    web_server: ThreadingHTTPServer,
) -> None:
    """DNS rebinding: a mixed answer is refused; a pinned session never re-resolves."""
    mixed = OutboundPolicy(resolver=lambda host, port: ["93.184.215.14", "127.0.0.1"])
    with pytest.raises(OutboundRefused):
        mixed.resolve("http://rebind.example/")
    port = web_server.server_address[1]
    # "node.example" does not resolve here: reaching the server proves the pinned address
    # is used; a different host through the same session is refused.
    policy = OutboundPolicy(
        allow_networks=OutboundPolicy.from_strings(
            ["127.0.0.0/8"], connect_timeout_s=1, read_timeout_s=1
        ).allow_networks,
        resolver=lambda host, port: ["127.0.0.1"],
    )
    target = policy.resolve(f"http://node.example:{port}/")
    assert target.address == "127.0.0.1"
    session = pinned_session(target, policy)
    assert session.get(f"http://node.example:{port}/x").status_code == 404
    with pytest.raises(Exception, match="refused"):
        session.get(f"http://127.0.0.1:{port}/x")


# -- (c) a registration's answer does not tell the state of a port ----------------------------


@pytest.fixture
def loopback_api(settings: Settings) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    allowed = settings.replace(
        node_allow_networks=("127.0.0.0/8",),
        node_connect_timeout_ms=1000,
        node_read_timeout_ms=1000,
        node_probe_timeout_ms=3000,
    )
    platform = build_platform(allowed)
    creds = initialise(platform)
    assert creds is not None
    with TestClient(create_app(platform)) as client:
        yield client, creds
    platform.engine.dispose()


def test_open_closed_and_silent_ports_answer_alike(
    loopback_api: tuple[TestClient, dict[str, Any]], web_server: ThreadingHTTPServer
) -> None:
    api, creds = loopback_api
    prov = login(api, creds, "provider-transport")
    hole = BlackHole()
    try:
        ports = {
            "open": web_server.server_address[1],
            "closed": closed_port(),
            "black-hole": hole.port,
        }
        bodies: dict[str, str] = {}
        took: dict[str, float] = {}
        for name, port in ports.items():
            t0 = time.monotonic()
            r = api.put("/v1/nodes/me", headers=prov, json=node_body(f"http://127.0.0.1:{port}"))
            took[name] = time.monotonic() - t0
            assert r.status_code == 422, (name, r.text)
            bodies[name] = without_ids(r.json())
    finally:
        hole.close()
    assert len(set(bodies.values())) == 1, bodies
    assert json.loads(bodies["open"])["type"].endswith("/node-unreachable")
    # Each failure is answered at the probe deadline (3 s), not when the port's state shows.
    assert all(2.9 <= t < 6 for t in took.values()), took


# -- (d) rows on the embedded node: sealed on disk, shredded with the provider's KEK ----------


def _grep(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n}" for n in needles if n.encode() in data]
    return hits


def test_embedded_node_rows_are_sealed_and_shredded_with_the_kek(
    platform: Platform, creds: dict[str, Any]
) -> None:
    for api in compute_client(platform):
        prov = login(api, creds, "provider-transport")
        org = creds["provider-transport"]["org_id"]
        ent = login(api, creds, "enterprise-fintech")
        assert api.put("/v1/nodes/me", headers=prov, json={"kind": "embedded"}).status_code == 200
        text = measure_csv(7, 55)
        ds = register_dataset(
            api, prov, text, "sealed ward readings", "general-2", path="/v1/nodes/datasets"
        )
        assert ds["custody"] == "node"
        rows = text.splitlines()[1:]
        needles = rows[:10] + [r.split(",")[0] for r in rows[:10]]
        node_db = platform.settings.home / "nodes" / org / "node.db"
        assert node_db.exists()
        assert _grep(platform.settings.home, needles) == []

        # The sealed rows still compute: opened for the job only.
        active_contract(api, ent, prov, org, [ds["id"]], PURPOSE)
        body = {
            "operator": "stats.count",
            "inputs": [ds["id"]],
            "params": {},
            "purpose": PURPOSE,
        }
        r = api.post("/v1/computations", headers=ent, json=body)
        assert r.status_code == 201, r.text
        done = wait_for(api, ent, r.json()["id"], "released", "failed", "rejected")
        assert done["state"] == "released", done["error"]
        assert _grep(platform.settings.home, needles) == []

        # Two key administrators destroy the provider's KEK: the node's rows are shredded.
        now = datetime.now(UTC)
        admins = [
            KeyActor(f"key-admin-{i}", frozenset({KeyRole.KEY_ADMINISTRATOR})) for i in (1, 2)
        ]
        with platform.session() as s, s.begin():
            req = platform.kms.request_destroy(
                s, KeyManager.kek_id(org), by=admins[0], now=now, reason="provider left"
            )
        with platform.session() as s, s.begin():
            platform.kms.approve_destroy(s, req.id, by=admins[1], now=now)
        r = api.post("/v1/computations", headers=ent, json=body)
        assert r.status_code == 201, r.text
        done = wait_for(api, ent, r.json()["id"], "released", "failed", "rejected")
        assert done["state"] == "failed", done
        assert done["error"]["code"] == "dataset-shredded", done["error"]
