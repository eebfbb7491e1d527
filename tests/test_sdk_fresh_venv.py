"""Must-show 1: pdx-client alone in a fresh venv runs the README's script against `pdx run`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.i15_sdk2 import make_venv
from tests.helpers.server import RealServer, start_server

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

README = Path(__file__).resolve().parents[1] / "README.md"
SERVER_ONLY = ("gateway", "exchange", "ledger", "fastapi", "sqlalchemy", "regopy", "tests")


def readme_script() -> str:
    """The first ```python block of the README's "Python SDK" section, verbatim."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("\n## Python SDK") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's Python SDK section has no python block"
    return match.group(1)


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        python, how = make_venv(tmp_path_factory.mktemp("sdk-venv"))
    except RuntimeError as exc:
        pytest.skip(f"cannot build the SDK's venv: neither the index nor local wheels: {exc}")
    print(f"SDK venv built from the {how}")
    return python


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RealServer]:
    srv = start_server(tmp_path / "home")
    try:
        yield srv
    finally:
        srv.stop()


def _user_env(tmp_path: Path, url: str) -> dict[str, str]:
    """The SDK user's environment: nothing of the checkout or the server's venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PDX_URL": url, "PDX_CONFIG_DIR": str(tmp_path / "config")}


def test_the_readme_script_runs_from_a_fresh_venv_against_a_real_server(
    venv_python: Path, server: RealServer, tmp_path: Path
) -> None:
    work = tmp_path / "example"
    env = _user_env(tmp_path, server.url)
    # The venv holds the SDK and nothing of the server.
    probe = (
        "import importlib.util as u, pdx_client; "
        f"print(pdx_client.__version__, [m for m in {SERVER_ONLY!r} if u.find_spec(m)])"
    )
    out = subprocess.run(
        [str(venv_python), "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split(" ", 1)[1].strip() == "[]", out.stdout
    # The operator writes the four clients' credentials and the wards' data (server side).
    made = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--url", server.url]
        + ["--sdk-example", str(work)],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    (work / "three_hospitals.py").write_text(readme_script(), encoding="utf-8")
    assert len(readme_script().splitlines()) <= 35
    run = subprocess.run(
        [str(venv_python), "three_hospitals.py"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    assert "awaiting-approval" in lines or "awaiting_approval" in lines
    assert lines[-2] == "released"
    found = re.search(r"'mean\(systolic_bp\)': ([0-9.]+)\} ε spent ([0-9.]+)", lines[-1])
    assert found, lines[-1]
    assert 60.0 <= float(found.group(1)) <= 240.0 and float(found.group(2)) > 0
    # The user verbs of the same install: log in as the enterprise and verify its trail.
    ent = json.loads((work / "hospitals.json").read_text())["enterprise"]
    pdx = str(venv_python.parent / "pdx")
    login = subprocess.run(
        [pdx, "login", "--url", server.url, "--client-id", ent["client_id"]],
        env={**env, "PDX_CLIENT_SECRET": ent["client_secret"]},
        capture_output=True,
        text=True,
    )
    assert login.returncode == 0, login.stdout + login.stderr
    vkey = subprocess.run(
        [str(venv_python), "-c", "import httpx,sys; print(httpx.get(sys.argv[1]).text)"]
        + [server.url + "/v1/ledger/verifier-key"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    verify = subprocess.run(
        [pdx, "trail", "verify", "--json", "--verifier-key", vkey],
        env=env,
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    checked = json.loads(verify.stdout)
    assert checked["org"] == ent["org"]
    assert len(checked["verified"]) + len(checked["pending"]) >= 3  # the three proposals
