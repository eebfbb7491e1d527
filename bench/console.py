"""`pdx bench console`: the four main console pages under 20 concurrent users; first load size.

Starts `pdx run` on a scratch home, signs each role in once (password + TOTP through the
form), then 20 threads fetch the four main pages in turn with those sessions.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyotp

from bench.report import WORK, Metric, write

PAGES = {
    "provider-transport": "/console/provider",
    "enterprise-fintech": "/console/enterprise",
    "auditor": "/console/auditor",
    "security-admin": "/console/admin",
}
ASSETS = (
    "/console/static/htmx.min.js",
    "/console/static/console.js",
    "/console/static/console.css",
)


def _server(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PDX_HOME": str(home), "PDX_PORT": str(port), "PDX_HOST": "127.0.0.1"}
    env.pop("PDX_DATABASE_URL", None)
    log = (home / "server.log").open("wb")
    cmd = [sys.executable, "-m", "gateway.cli", "run", "--log-level", "warning"]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def _login(url: str, person: dict[str, str]) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=30)
    page = c.get("/console/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    r = c.post(
        "/console/login",
        data={
            "csrf": csrf.group(1),
            "login": person["login"],
            "password": person["password"],
            "totp": pyotp.TOTP(person["totp_secret"]).now(),
        },
    )
    assert r.status_code == 303, r.text
    return c


def run(quick: bool = False) -> Path:
    home = WORK / "console"
    subprocess.run(["rm", "-rf", str(home)], check=True)
    home.mkdir(parents=True)
    port = 8790
    proc = _server(home, port)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (home / "server.log").read_text()[-2000:]
            time.sleep(0.3)
        creds = json.loads((home / "demo-credentials.json").read_text())
        clients = {who: _login(url, creds[who]["person"]) for who in PAGES}
        first_kb = 0.0
        for who, path in PAGES.items():
            size = len(clients[who].get(path).content)
            size += sum(len(clients[who].get(a).content) for a in ASSETS)
            first_kb = max(first_kb, size / 1024)
        rounds = 3 if quick else 15
        users = 20

        def user(n: int) -> list[float]:
            out = []
            for i in range(rounds):
                who = list(PAGES)[(n + i) % 4]
                t0 = time.perf_counter()
                r = clients[who].get(PAGES[who])
                out.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.status_code
            return out

        for who, path in PAGES.items():  # warm-up
            clients[who].get(path)
        with ThreadPoolExecutor(users) as pool:
            samples = sorted(s for lst in pool.map(user, range(users)) for s in lst)
        p95 = samples[int(len(samples) * 0.95) - 1]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return write(
        "console",
        {"users": users, "rounds_per_user": rounds, "pages": list(PAGES.values()), "quick": quick},
        {
            "console_page_p95_ms": Metric(round(p95, 1), "ms", "< 300", p95 < 300),
            "console_page_p50_ms": Metric(round(samples[len(samples) // 2], 1), "ms"),
            "console_first_load_kb": Metric(round(first_kb, 1), "KB", "< 500", first_kb < 500),
        },
    )
