"""End to end through the real server: `pdx run` in a subprocess, `pdx demo` against it."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import EXAMPLE_CSV
from tests.helpers.server import PDX, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # each test starts the real server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    real = start_server(tmp_path / "home", deadline_s=60)
    try:
        yield real.url, real.env
    finally:
        real.stop(timeout=20)


def test_run_serves_health_and_docs_and_the_demo_passes(
    server: tuple[str, dict[str, str]],
) -> None:
    url, env = server
    assert httpx.get(url + "/docs").status_code == 200
    home = Path(env["PDX_HOME"])
    creds = home / "demo-credentials.json"
    assert creds.stat().st_mode & 0o777 == 0o600

    out = subprocess.run(
        [*PDX, "demo", "--url", url], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "level-below-content" in out.stdout
    assert "registered" in out.stdout and "id_number" in out.stdout
    assert "demo finished" in out.stdout

    # Must show 3: no plaintext under $PDX_HOME (a known ID number and phone).
    with open(EXAMPLE_CSV, encoding="utf-8", newline="") as f:
        row = next(csv.DictReader(f))
    grep = subprocess.run(
        ["grep", "-r", "-a", "-l", "-e", row["id_number"], str(home)], capture_output=True
    )
    assert grep.returncode == 1, grep.stdout


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PDX_HOME": str(tmp_path), "PDX_PORT": "not-a-port"}
    out = subprocess.run([*PDX, "init"], env=env, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert out.stderr.startswith("pdx: error: PDX_PORT")
    env = {**os.environ, "PDX_HOME": str(tmp_path)}
    out = subprocess.run(
        [*PDX, "demo", "--url", "http://127.0.0.1:9", "--credentials", str(tmp_path / "none")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1


def test_client_vanishing_mid_upload_leaves_nothing(server: tuple[str, dict[str, str]]) -> None:
    url, env = server
    home = Path(env["PDX_HOME"])
    creds = json.loads((home / "demo-credentials.json").read_text())["provider-transport"]
    token = httpx.post(
        url + "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
        },
    ).json()["access_token"]
    boundary = "pdxboundary"
    meta = json.dumps(
        {
            "name": "half",
            "classification_path": ["a", "b"],
            "level": "general-4",
            "impact_object": "individual-rights",
            "impact_degree": "serious",
            "source_agency": "x",
            "accountable_department": "y",
            "pi": True,
            "sensitive_pi": True,
            "share_attribute": "conditional",
            "open_attribute": "conditional",
        }
    )
    csv_bytes = EXAMPLE_CSV.read_bytes() * 3
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{meta}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    total = len(head) + len(csv_bytes) + len(f"\r\n--{boundary}--\r\n")
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            (
                f"POST /v1/datasets HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {token}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {total}\r\n\r\n"
            ).encode()
            + head
            + csv_bytes[: len(csv_bytes) // 2]
        )
        objects = home / "objects"
        deadline = time.monotonic() + 20
        # The server has begun hashing, encrypting and writing the object...
        while not any(objects.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p.name.endswith(".partial") for p in objects.iterdir()] == [True]
    # ...and removes it once the client has gone.
    deadline = time.monotonic() + 20
    while any(objects.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(objects.iterdir()) == []
    listed = httpx.get(url + "/v1/datasets", headers={"Authorization": f"Bearer {token}"}).json()
    assert listed["items"] == [] and listed["total"] == 0
