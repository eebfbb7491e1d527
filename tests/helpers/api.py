"""Talking to the API in tests: demo logins, problem documents, the example data set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.platform import Platform

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CSV = REPO / "examples" / "transit_trips.csv"


def login(api: TestClient, creds: dict[str, dict[str, Any]], name: str) -> dict[str, str]:
    """Authorization header for a demo client."""
    c = creds[name]
    r = api.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": c["client_id"],
            "client_secret": c["client_secret"],
        },
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


PROBLEM = "application/problem+json"


def assert_problem(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem document with this status (and, if given, this problem type)."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    if code is not None:
        assert body["type"].endswith("/" + code), body
    assert body["status"] == status
    return body


def compute_client(platform: Platform) -> Iterator[TestClient]:
    """A client of the app; its shutdown stops the job runner and any nodes."""
    platform.compute.paillier_bits = 1024  # the minimum allowed; key generation dominates
    with TestClient(create_app(platform)) as client:
        yield client
