"""Issue 11 attacks on the gateway's limits: huge bodies, credential floods, forged proxies.

The flood and proxy tests run a real `pdx run` server in a subprocess and send from
distinct loopback addresses (127.0.0.2, 127.0.0.3, ...: all of 127/8 is local on Linux),
because per-address limits and the socket peer only exist on real sockets.
"""

from __future__ import annotations

import json
import select
import socket
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select as sql_select

import audit
from gateway.app import create_app
from gateway.platform import Platform
from tests.conftest import login
from tests.helpers import server as real_server

PDX = [sys.executable, "-m", "gateway.cli"]
MB = 1 << 20


# -- a real server ---------------------------------------------------------------------------


class Server(real_server.RealServer):
    """The real server with the readings these attacks need."""

    def creds(self, name: str) -> dict[str, str]:
        data: dict[str, dict[str, str]] = json.loads(
            (self.home / "demo-credentials.json").read_text()
        )
        return data[name]

    def rss(self) -> int:
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def client(self, source: str = "127.0.0.1", **kw: Any) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=source)
        return httpx.Client(base_url=self.url, transport=transport, timeout=60, **kw)

    def audit_rows(self, where: str = "1=1") -> list[sqlite3.Row]:
        db = sqlite3.connect(self.home / "pdx.db", timeout=30)
        db.row_factory = sqlite3.Row
        try:
            return list(db.execute(f"SELECT * FROM audit_records WHERE {where}"))  # noqa: S608
        finally:
            db.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(**extra: str) -> Server:
        real = real_server.start_server(tmp_path / f"home-{len(servers)}", extra)
        server = Server(real.proc, real.port, real.home, real.env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# -- raw HTTP/1.1 over a socket, to send bodies httpx would not (lying or absent lengths) -----


def _raw_post(
    port: int,
    path: str,
    headers: dict[str, str],
    chunks: Iterator[bytes],
    *,
    chunked: bool,
    source: str = "127.0.0.1",
) -> tuple[int, int, bytes]:
    """Send a request body piece by piece until the server answers; (status, sent, body)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(source, 0))
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
    sock.sendall((head + "\r\n").encode())
    sent = 0
    try:
        for chunk in chunks:
            ready, _, _ = select.select([sock], [], [], 0)
            if ready:
                break  # the server answered before the body ended: stop sending
            data = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        response = b""
        while b"\r\n\r\n" not in response:
            try:
                piece = sock.recv(65536)
            except ConnectionResetError:
                break
            if not piece:
                break
            response += piece
    finally:
        sock.close()
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0
    return status, sent, response


def _json_bomb(total: int) -> Iterator[bytes]:
    """A JSON object whose one string value is `total` bytes long, in 256 KiB pieces."""
    yield b'{"name": "'
    piece = b"a" * (256 << 10)
    for _ in range(total // len(piece)):
        yield piece
    yield b'", "kind": "provider"}'


def test_oversized_bodies_are_refused_before_authentication_without_memory_growth(
    start_server: Callable[..., Server],
) -> None:
    """Finding "unauthenticated memory exhaustion": 4 x 80 MB took RSS from 0.7 to 1.8 GB."""
    server = start_server(PDX_MAX_UPLOAD_BYTES=str(8 * MB))
    with server.client() as c:  # warm up the routes once, then measure
        assert c.post("/v1/organisations", json={"name": "x", "kind": "y"}).status_code == 401
    before = server.rss()
    size = 80 * MB
    multipart = {"Content-Type": "multipart/form-data; boundary=b"}
    attempts = [
        # An honest Content-Length: refused from the header, before reading anything.
        (
            "/v1/organisations",
            {"Content-Type": "application/json", "Content-Length": str(size + 31)},
            False,
            413,
        ),
        # No Content-Length (chunked): cut off by counting the streamed bytes.
        ("/v1/organisations", {"Content-Type": "application/json"}, True, 413),
        ("/v1/contracts", {"Content-Type": "application/json"}, True, 413),
        # The upload route has its own, larger limit: refused from the header ...
        ("/v1/datasets", {**multipart, "Content-Length": str(size + 31)}, False, 413),
        # ... and, chunked, it authenticates before reading a byte of the stream.
        ("/v1/datasets", multipart, True, 401),
    ]
    for path, headers, chunked, expected in attempts:
        status, sent, response = _raw_post(
            server.port, path, headers, _json_bomb(size), chunked=chunked
        )
        assert status == expected, (path, status, response[:300])
        assert b"application/problem+json" in response
        # The server stopped reading: far less than the body was ever sent.
        assert sent < 24 * MB, (path, sent)
    grown = server.rss() - before
    # Unlimited, the same four bodies grew RSS by about 1.1 GB (issue 11).
    assert grown < 60 * MB, f"RSS grew by {grown / MB:.0f} MB"
    # A body within the limit still reaches the route (and its authentication).
    with server.client() as c:
        r = c.post("/v1/organisations", json={"name": "a" * 1000, "kind": "provider"})
        assert r.status_code == 401


def test_a_body_over_the_limit_is_problem_json_with_a_stable_type(api: TestClient) -> None:
    """Through the app: the streamed count (no Content-Length) answers problem+json."""

    def body() -> Iterator[bytes]:
        yield from _json_bomb(3 * MB)

    r = api.post("/v1/organisations", content=body(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "https://pdx.dev/problems/request-too-large"
    assert r.json()["limit_bytes"] == 1 << 20


# -- credential floods ----------------------------------------------------------------------


def _token(c: httpx.Client, client_id: str, secret: str) -> httpx.Response:
    return c.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )


def test_a_credential_flood_from_one_address_does_not_slow_a_victim_elsewhere(
    start_server: Callable[..., Server],
) -> None:
    """Finding "token endpoint under load": 12 flooding threads took a login to 10.7 s."""
    server = start_server()
    victim = server.creds("enterprise-fintech")
    with server.client("127.0.0.3") as c:
        started = time.monotonic()
        assert _token(c, victim["client_id"], victim["client_secret"]).status_code == 200
        unloaded = time.monotonic() - started

    stop = threading.Event()
    statuses: list[int] = []
    refusals: list[httpx.Response] = []

    def flood(n: int) -> None:
        with server.client("127.0.0.2") as c:
            i = 0
            while not stop.is_set():
                # Guesses at the victim's secret, and at made-up client ids.
                cid = victim["client_id"] if i % 2 == 0 else f"pdx-{n:02d}{i:014x}"
                r = _token(c, cid, f"guess-{i}")
                statuses.append(r.status_code)
                if r.status_code == 429 and len(refusals) < 5:
                    refusals.append(r)
                i += 1

    threads = [threading.Thread(target=flood, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while len(statuses) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        latencies = []
        with server.client("127.0.0.3") as c:
            for _ in range(5):
                started = time.monotonic()
                r = _token(c, victim["client_id"], victim["client_secret"])
                latencies.append(time.monotonic() - started)
                assert r.status_code == 200, r.text
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    # The flood was refused cheaply: most of it as 429 problem+json with Retry-After.
    assert statuses.count(429) > 0.8 * len(statuses), {s: statuses.count(s) for s in {*statuses}}
    r = refusals[0]
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "https://pdx.dev/problems/rate-limited"
    assert int(r.headers["retry-after"]) >= 1
    # The victim on another address is neither locked out nor slowed much (10.7 s before).
    assert statistics.median(latencies) < max(1.0, 5 * unloaded), (unloaded, latencies)
    assert max(latencies) < 3.0, latencies


def test_the_failure_budget_is_per_address(start_server: Callable[..., Server]) -> None:
    """Wrong secrets from one address lock out that address, not the client elsewhere."""
    server = start_server(PDX_AUTH_FAILURE_BURST="3", PDX_AUTH_FAILURES_PER_MIN="1")
    victim = server.creds("provider-health")
    with server.client("127.0.0.4") as c:
        codes = [_token(c, victim["client_id"], "wrong").status_code for _ in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        # Even the right secret waits now, from this address: no more guesses here.
        assert _token(c, victim["client_id"], victim["client_secret"]).status_code == 429
    with server.client("127.0.0.5") as c:
        assert _token(c, victim["client_id"], victim["client_secret"]).status_code == 200


def test_a_bearer_flood_writes_a_bounded_number_of_audit_rows(
    platform: Platform, creds: dict[str, dict[str, Any]]
) -> None:
    """Finding: 3,000 requests with `Bearer x` wrote 3,000 audit rows."""

    def failures() -> list[audit.AuditRecord]:
        with platform.session() as s:
            rows = s.scalars(sql_select(audit.AuditRecord))
            return [r for r in rows if r.event_type.startswith("auth.")]

    with TestClient(create_app(platform)) as api:
        for _ in range(3000):
            r = api.get("/v1/me", headers={"Authorization": "Bearer x"})
            assert r.status_code in (401, 429)
        rows = failures()
        assert 1 <= len(rows) <= 10, len(rows)
        # The first failure is recorded at once, with the 等保 fields.
        first = next(r for r in rows if r.event_type == "auth.denied")
        assert first.result == "deny" and first.subject_ip == "testclient"
    # At shutdown the open windows are written as bursts: the counts add up to 3,000.
    rows = failures()
    bursts = [r for r in rows if r.event_type == "auth.failure_burst"]
    assert bursts and len(rows) <= 10
    counted = sum(int((r.detail or "").split("count=")[1].split()[0]) for r in bursts)
    assert counted + len(rows) - len(bursts) == 3000
    assert all(r.result == "deny" and r.subject_ip == "testclient" for r in bursts)
    assert all("first=" in (r.detail or "") and "last=" in (r.detail or "") for r in bursts)


# -- forwarded headers ----------------------------------------------------------------------


def _failure_ip(server: Server, source: str, headers: dict[str, str], marker: str) -> str:
    """Make one audited failure; return the address the audit recorded.

    Each call uses a source not seen before: repeats would fold into a burst.
    """
    with server.client(source) as c:
        r = c.get("/v1/me", headers={"Authorization": f"Bearer {marker}", **headers})
        assert r.status_code == 401
        request_id = r.headers["x-request-id"]
    rows = server.audit_rows(f"request_id = '{request_id}'")
    assert len(rows) == 1, rows
    return str(rows[0]["subject_ip"])


def test_forwarded_headers_count_only_from_trusted_proxies(
    start_server: Callable[..., Server],
) -> None:
    """Finding: `X-Forwarded-For` was trusted from any peer (uvicorn trusts loopback)."""
    server = start_server(PDX_TRUSTED_PROXIES="127.0.0.3/32, 10.0.0.0/8")
    xff = {"X-Forwarded-For": "203.0.113.9"}
    # Untrusted peers: the socket address, whatever the header says.
    assert _failure_ip(server, "127.0.0.1", xff, "a") == "127.0.0.1"
    assert _failure_ip(server, "127.0.0.2", xff, "b") == "127.0.0.2"
    fwd = {"Forwarded": "for=203.0.113.9"}
    assert _failure_ip(server, "127.0.0.6", fwd, "c") == "127.0.0.6"
    # The trusted proxy: its header names the client; trusted hops are skipped, and a
    # spoofed entry left of the first untrusted hop is ignored.
    assert _failure_ip(server, "127.0.0.3", xff, "d") == "203.0.113.9"
    chain = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.1.2.3"}
    assert _failure_ip(server, "127.0.0.3", chain, "e") == "203.0.113.7"
    fwd = {"Forwarded": 'for="[2001:db8::7]:4711", for=10.0.0.1'}
    assert _failure_ip(server, "127.0.0.3", fwd, "f") == "2001:db8::7"
    assert _failure_ip(server, "127.0.0.3", {"X-Forwarded-For": "junk"}, "g") == "127.0.0.3"


# -- client lifecycle -----------------------------------------------------------------------


def _new_client(api: TestClient, admin: dict[str, str], org_id: str, name: str) -> dict[str, Any]:
    r = api.post(
        f"/v1/organisations/{org_id}/clients",
        json={"name": name, "roles": ["data-provider"]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _grant(api: TestClient, client: dict[str, Any], secret: str | None = None) -> Any:
    return api.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client["client_id"],
            "client_secret": secret or client["client_secret"],
        },
    )


def _events(platform: Platform, event_type: str, object_id: str) -> list[audit.AuditRecord]:
    with platform.session() as s:
        return list(
            s.scalars(
                sql_select(audit.AuditRecord).where(
                    audit.AuditRecord.event_type == event_type,
                    audit.AuditRecord.object_id == object_id,
                )
            )
        )


def test_a_deactivated_client_gets_no_tokens_and_its_tokens_stop_working(
    api: TestClient, creds: dict[str, dict[str, Any]], platform: Platform
) -> None:
    # The provider's own administrator (its demo client acts for its admin person).
    admin = login(api, creds, "provider-transport")
    org = creds["provider-transport"]["org_id"]
    client = _new_client(api, admin, org, "pipeline-bot")
    grant = _grant(api, client).json()
    bearer = {"Authorization": f"Bearer {grant['access_token']}"}
    assert api.get("/v1/me", headers=bearer).status_code == 200

    # Not the organisation's administrator: refused, nothing changes.
    for who in ("operator-admin", "security-admin", "provider-health"):
        r = api.post(
            f"/v1/organisations/{org}/clients/{client['client_id']}/deactivate",
            headers=login(api, creds, who),
        )
        assert r.status_code == 403, (who, r.text)
    assert api.get("/v1/me", headers=bearer).status_code == 200

    r = api.post(f"/v1/organisations/{org}/clients/{client['client_id']}/deactivate", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False and r.json()["ledger_index"] is not None
    assert "client_secret" not in r.json()
    [rec] = _events(platform, "client.deactivated", client["client_id"])
    assert rec.ledger_index == r.json()["ledger_index"] and rec.result == "success"

    assert api.get("/v1/me", headers=bearer).status_code == 401
    assert _grant(api, client).status_code == 401
    refreshed = api.post(
        "/v1/auth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
            "refresh_token": grant["refresh_token"],
        },
    )
    assert refreshed.status_code == 401
    again = api.post(
        f"/v1/organisations/{org}/clients/{client['client_id']}/deactivate", headers=admin
    )
    assert again.status_code == 409
    # A client of another organisation is not found under this one.
    other = creds["enterprise-fintech"]["client_id"]
    r = api.post(f"/v1/organisations/{org}/clients/{other}/deactivate", headers=admin)
    assert r.status_code in (403, 404)


def test_rotating_a_secret_retires_the_old_one_and_its_logins(
    api: TestClient, creds: dict[str, dict[str, Any]], platform: Platform
) -> None:
    admin = login(api, creds, "provider-health")
    org = creds["provider-health"]["org_id"]
    client = _new_client(api, admin, org, "export-bot")
    grant = _grant(api, client).json()
    bearer = {"Authorization": f"Bearer {grant['access_token']}"}

    for who in ("enterprise-fintech", "operator-admin"):
        denied = api.post(
            f"/v1/organisations/{org}/clients/{client['client_id']}/rotate-secret",
            headers=login(api, creds, who),
        )
        assert denied.status_code == 403, (who, denied.text)
    assert _grant(api, client).status_code == 200  # unchanged by the refusal

    r = api.post(
        f"/v1/organisations/{org}/clients/{client['client_id']}/rotate-secret", headers=admin
    )
    assert r.status_code == 200, r.text
    new_secret = r.json()["client_secret"]
    assert new_secret and new_secret != client["client_secret"]
    [rec] = _events(platform, "client.secret_rotated", client["client_id"])
    assert rec.ledger_index == r.json()["ledger_index"] is not None

    assert _grant(api, client).status_code == 401  # the old secret stops at rotation
    assert api.get("/v1/me", headers=bearer).status_code == 401  # so do its logins
    fresh = _grant(api, client, new_secret)
    assert fresh.status_code == 200
    me = api.get("/v1/me", headers={"Authorization": f"Bearer {fresh.json()['access_token']}"})
    assert me.status_code == 200 and me.json()["client_id"] == client["client_id"]


def test_the_lifecycle_routes_need_a_token(platform: Platform, creds: Any) -> None:
    with TestClient(create_app(platform)) as api:
        org = creds["provider-health"]["org_id"]
        cid = creds["provider-health"]["client_id"]
        for action in ("deactivate", "rotate-secret"):
            r = api.post(f"/v1/organisations/{org}/clients/{cid}/{action}")
            assert r.status_code == 401


# -- the mechanisms on an injected clock ------------------------------------------------------


def test_token_buckets_refill_on_the_injected_clock() -> None:
    from gateway.ratelimit import RateLimiter

    now = [100.0]
    limiter = RateLimiter(capacity=2, per_minute=6, clock=lambda: now[0])  # one per 10 s
    assert limiter.take("a") == 0 and limiter.take("a") == 0
    assert limiter.take("a") == pytest.approx(10.0)
    assert limiter.take("b") == 0  # another key has its own budget
    now[0] += 5
    assert limiter.retry_after("a") == pytest.approx(5.0)
    now[0] += 5
    assert limiter.take("a") == 0 and limiter.take("a") > 0


def test_a_burst_window_closes_into_one_record_and_reopens() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    bursts = audit.BurstAggregator(window=timedelta(seconds=60))

    def seen(at: float) -> bool:
        return bursts.observe(
            address="192.0.2.1",
            event_type="auth.denied",
            subject_id=None,
            action="GET /v1/me",
            now=t0 + timedelta(seconds=at),
        )

    assert seen(0) is True  # the first failure is recorded at once
    assert [seen(s) for s in (1, 2, 59)] == [False, False, False]
    assert bursts.due(t0 + timedelta(seconds=30)) == []
    [burst] = bursts.due(t0 + timedelta(seconds=60))
    assert burst.count == 3 and burst.first == t0 + timedelta(seconds=1)
    assert burst.last == t0 + timedelta(seconds=59)
    assert seen(61) is True  # a new window: recorded individually again
    assert seen(62) is False and seen(130) is True  # window over while failing
    [closed] = bursts.due(t0 + timedelta(seconds=130))
    assert closed.count == 1 and bursts.drain() == []
