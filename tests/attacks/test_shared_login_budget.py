"""Issue 11: sign-in failure budgets shared by every gateway process of one deployment.

Two real `pdx run` processes over one database (SQLite and PostgreSQL), as behind a
load balancer or uvicorn's workers: guesses from one address spread over both must
spend one budget, not one each. Successful sign-ins write nothing to that budget.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from gateway.platform import database_url
from tests.helpers import server as real_server
from tests.helpers.s13_token_flood import at_once

BURST = 4
FLOODER, VICTIM = "127.0.0.7", "127.0.0.8"
PERSON_GRANT = "urn:pdx:params:oauth:grant-type:person"


@pytest.fixture
def two_servers(tmp_path: Path, db_url: str) -> Iterator[list[real_server.RealServer]]:
    """Two server processes, one `$PDX_HOME` and one database; stopped afterwards."""
    env = {
        "PDX_DATABASE_URL": db_url,
        "PDX_AUTH_FAILURE_BURST": str(BURST),
        "PDX_AUTH_FAILURES_PER_MIN": "1",  # one a minute: no refill within the test
        "PDX_AUTH_TARPIT_MS": "0",
    }
    servers: list[real_server.RealServer] = []
    try:
        for _ in range(2):  # one after the other: the second finds the store seeded
            servers.append(real_server.start_server(tmp_path / "home", env))
        yield servers
    finally:
        for s in servers:
            s.stop()


def from_address(server: real_server.RealServer, source: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=server.url, transport=transport, timeout=60)


def creds(server: real_server.RealServer, name: str) -> dict[str, str]:
    data: dict[str, dict[str, str]] = json.loads(
        (server.home / "demo-credentials.json").read_text()
    )
    return data[name]


def client_token(c: httpx.Client, client_id: str, secret: str) -> int:
    return c.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    ).status_code


def budget_rows(db_url: str) -> dict[str, float]:
    engine = create_engine(database_url(db_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT key, level FROM login_failure_budgets"))
            return {key: float(level) for key, level in rows}
    finally:
        engine.dispose()


def test_two_processes_share_one_failure_budget(
    two_servers: list[real_server.RealServer], db_url: str
) -> None:
    a, b = two_servers
    victim = creds(a, "enterprise-fintech")
    flooders = [from_address(s, FLOODER) for s in (a, b)]
    victims = [from_address(s, VICTIM) for s in (a, b)]
    try:
        for v in victims:  # successful sign-ins on both processes (they write no budget)
            assert client_token(v, victim["client_id"], victim["client_secret"]) == 200
        # Wrong secrets from one address, alternating between the processes: one budget
        # of BURST failures in all (per-process budgets let 2 * BURST through).
        codes = [
            client_token(flooders[i % 2], victim["client_id"], "wrong secret")
            for i in range(3 * BURST)
        ]
        assert codes.count(401) == BURST, codes
        assert codes.count(429) == 2 * BURST, codes
        # A person's password guesses spend the same budget, on either process.
        for f in flooders:
            r = f.post(
                "/v1/auth/token",
                data={
                    "grant_type": PERSON_GRANT,
                    "username": "security-admin",
                    "password": "not the password",
                    "totp": "000000",
                },
            )
            assert r.status_code == 429, r.text
            assert r.headers["content-type"] == "application/problem+json"
            r = f.post(
                "/v1/auth/passkey-options",
                json={"username": "security-admin", "password": "not the password"},
            )
            assert r.status_code == 429, r.text
        # The victim, elsewhere, still signs in on both.
        for v in victims:
            assert client_token(v, victim["client_id"], victim["client_secret"]) == 200
        rows = budget_rows(db_url)  # only the failing address has a budget row
        assert set(rows) == {f"addr:{FLOODER}"}
        assert rows[f"addr:{FLOODER}"] < 1.0
    finally:
        for c in flooders + victims:
            c.close()


def test_concurrent_guesses_on_two_processes_are_all_counted(
    two_servers: list[real_server.RealServer], db_url: str
) -> None:
    """16 guesses at once, half on each process: each failure is written (no lost update).

    A process sees the other's failures but not its checks in flight, which are at most
    `SecretChecks.per_address` (2): those may overshoot the budget once, and are then
    owed (the level goes below zero, and the address waits them off).
    """
    a, b = two_servers
    victim = creds(a, "enterprise-fintech")
    flooders = [from_address(s, FLOODER) for s in (a, b)]
    try:
        codes = at_once(
            4 * BURST,
            lambda i: client_token(flooders[i % 2], victim["client_id"], "wrong secret"),
        )
    finally:
        for c in flooders:
            c.close()
    failed = codes.count(401)
    assert codes.count(429) == 4 * BURST - failed, codes
    assert BURST <= failed <= BURST + 2, codes  # per-process budgets: up to 2 * BURST
    level = budget_rows(db_url)[f"addr:{FLOODER}"]
    assert abs(level - (BURST - failed)) < 0.5, (level, failed)  # every failure counted


def test_person_and_passkey_refusals_are_answered_late(tmp_path: Path) -> None:
    """Over the budget, every person-password route refuses, after the tarpit.

    The person grant, /v1/auth/passkey-options and /v1/invitations/confirm (which had
    no budget, and checked the password inside its write transaction).
    """
    delay_s = 0.7
    server = real_server.start_server(
        tmp_path / "home",
        {
            "PDX_AUTH_FAILURE_BURST": "2",
            "PDX_AUTH_FAILURES_PER_MIN": "1",
            "PDX_AUTH_TARPIT_MS": str(int(delay_s * 1000)),
        },
    )
    guess = {"username": "security-admin", "password": "not the password"}
    try:
        with from_address(server, FLOODER) as f:
            for _ in range(2):  # the budget: two password checks, both wrong
                r = f.post("/v1/auth/passkey-options", json=guess)
                assert r.status_code in (400, 401), r.text
            person = {**guess, "grant_type": PERSON_GRANT, "totp": "000000"}
            confirm = {"login": "security-admin", "password": "not the password", "totp": "0" * 6}
            for send in (
                lambda: f.post("/v1/auth/passkey-options", json=guess),
                lambda: f.post("/v1/auth/token", data=person),
                lambda: f.post("/v1/invitations/confirm", json=confirm),
            ):
                r = send()
                assert r.status_code == 429, r.text
                assert r.elapsed.total_seconds() >= delay_s * 0.95
    finally:
        server.stop()
