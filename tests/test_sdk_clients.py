"""The SDK's session under other clients: the audit monitor's token, the demo's HTTP client."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.helpers.i15_sdk import SDK  # noqa: F401  (puts sdk/ on the path)
from tests.helpers.server import RealServer, start_server

from pdx_client import Enterprise, Session  # isort: skip


def test_bearer_auth_logs_in_again_after_its_token_is_revoked(
    api: TestClient, creds: dict[str, Any]
) -> None:
    """Another httpx client (the monitor's) gets the session's token and its renewal."""
    c = creds["auditor"]
    session = Session("http://testserver", c["client_id"], c["client_secret"], http=api)
    other = httpx.Client(base_url="http://testserver", transport=api._transport, auth=session.auth)
    assert other.get("/v1/me").json()["client_id"] == c["client_id"]
    first = session._token
    assert first is not None
    r = api.post(
        "/v1/auth/revoke",
        data={"client_id": c["client_id"], "client_secret": c["client_secret"], "token": first},
    )
    assert r.status_code == 200, r.text
    assert api.get("/v1/me", headers={"Authorization": f"Bearer {first}"}).status_code == 401
    again = other.get("/v1/me")  # 401 with the revoked token, then one fresh login
    assert again.status_code == 200, again.text
    assert session._token not in (None, first)


def test_a_session_over_a_given_client_leaves_it_open(
    api: TestClient, creds: dict[str, Any]
) -> None:
    c = creds["enterprise-fintech"]
    with Enterprise.login("http://testserver", c["client_id"], c["client_secret"], http=api) as e:
        assert e.me().client_id == c["client_id"]
    assert api.get("/healthz").status_code == 200  # the demo's client still works


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RealServer]:
    srv = start_server(tmp_path / "home")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.slow
def test_pdx_audit_verify_url_logs_in_through_the_sdk(server: RealServer, tmp_path: Path) -> None:
    auditor = json.loads((server.home / "demo-credentials.json").read_text())["auditor"]
    key = httpx.get(server.url + "/v1/ledger/verifier-key").text.strip()
    state = tmp_path / "monitor.json"
    command = [sys.executable, "-m", "gateway.cli", "audit", "verify", "--url", server.url]
    command += ["--pubkey", key, "--client-id", auditor["client_id"], "--state", str(state)]
    for _ in range(2):  # the first round reads the whole log, the second only what is new
        out = subprocess.run(
            command,
            env={**server.env, "PDX_CLIENT_SECRET": auditor["client_secret"]},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert json.loads(state.read_text())["tree_size"] > 0
    wrong = subprocess.run(
        command,
        env={**server.env, "PDX_CLIENT_SECRET": "not-the-secret"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode != 0
    assert wrong.stderr.strip().count("\n") == 0 and "cannot log in" in wrong.stderr
