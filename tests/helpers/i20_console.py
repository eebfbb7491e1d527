"""Console test helpers: sign in through the form (TOTP), a real browser if one is here."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest

CHROMIUM = os.environ.get("PDX_CHROMIUM", "/usr/bin/chromium")
AXE = Path(os.environ.get("PDX_AXE_CORE", "/work/axe/node_modules/axe-core/axe.min.js"))
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, html[:500]
    return found.group(1)


def totp_code(secret: str, *, step_offset: int = 0) -> str:
    return pyotp.TOTP(secret).at(int(time.time()) + 30 * step_offset)


def form_login(client: Any, person: dict[str, str], *, step_offset: int = 0) -> Any:
    """Sign a person in through /console/login with a client keeping cookies."""
    page = client.get("/console/login")
    assert page.status_code == 200, page.text
    return client.post(
        "/console/login",
        data={
            "csrf": csrf_of(page.text),
            "login": person["login"],
            "password": person["password"],
            "totp": totp_code(person["totp_secret"], step_offset=step_offset),
        },
        follow_redirects=False,
    )


def need_chromium() -> str:
    """Debian's chromium (Playwright's own download is not reachable here)."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        reason = f"chromium not installed at {CHROMIUM} (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    return CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium"))


def need_axe() -> Path:
    if not AXE.is_file():
        reason = f"axe-core not found at {AXE} (.ci/run installs it from npm)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return AXE
