"""`pdx bench console`: the four main console pages under 20 concurrent users; first load size.

Starts `pdx run` on a scratch home, signs each role in once (password + TOTP through the
form), then 20 threads fetch the four main pages in turn with those sessions.

`console_page_p95_ms` times a page's HTML (its first paint); `console_full_view_p95_ms`
times the page and then, one after the other, the panels htmx loads into it
(`hx-trigger="load"`), so a page cannot look fast by moving its work into panels.

With `PDX_BENCH_CONSOLE_BASELINE=<source tree>` (e.g. an export of main) a second server
runs that tree's code on its own scratch home, and the two are measured in alternating
phases of one run (baseline, current, baseline, current), so both figures see the same
machine load; the baseline's figures are written beside the current ones.
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


LAZY = re.compile(r'hx-get="([^"]+)" hx-trigger="load"')


def _server(home: Path, port: int, source: Path | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PDX_HOME": str(home), "PDX_PORT": str(port), "PDX_HOST": "127.0.0.1"}
    env.pop("PDX_DATABASE_URL", None)
    if source is not None:
        # The other tree first: its packages shadow this checkout's.
        paths = (str(source), str(source / "sdk"), env.get("PYTHONPATH", ""))
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    log = (home / "server.log").open("wb")
    cmd = [sys.executable, "-m", "gateway.cli", "run", "--log-level", "warning"]
    # `python -m` puts the working directory first on sys.path: run the other tree's
    # server from inside it, or it would import this checkout's code.
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=source)


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


class Target:
    """One running server and a signed-in session per role."""

    def __init__(self, name: str, home: Path, port: int, source: Path | None) -> None:
        subprocess.run(["rm", "-rf", str(home)], check=True)
        home.mkdir(parents=True)
        self.name, self.home, self.url = name, home, f"http://127.0.0.1:{port}"
        self.proc = _server(home, port, source)
        self.clients: dict[str, httpx.Client] = {}
        self.panels: dict[str, list[str]] = {}
        self.by_page: dict[str, list[float]] = {}

    def start(self) -> None:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, (self.home / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, (self.home / "server.log").read_text()[-2000:]
            time.sleep(0.3)
        creds = json.loads((self.home / "demo-credentials.json").read_text())
        self.clients = {who: _login(self.url, creds[who]["person"]) for who in PAGES}

    def first_load_kb(self) -> float:
        """The largest of: a main page, its lazy panels and the static assets, in KB."""
        first_kb = 0.0
        for who, path in PAGES.items():
            page = self.clients[who].get(path)
            self.panels[who] = LAZY.findall(page.text)
            size = len(page.content)
            size += sum(len(self.clients[who].get(u).content) for u in self.panels[who])
            size += sum(len(self.clients[who].get(a).content) for a in ASSETS)
            first_kb = max(first_kb, size / 1024)
        return first_kb

    def phase(self, rounds: int, users: int) -> tuple[list[float], list[float]]:
        """`users` threads, `rounds` views each: (page times, page-and-panels times) in ms."""

        def user(n: int) -> list[tuple[float, float]]:
            out = []
            for who, page, view in self.views(n, rounds):
                self.by_page.setdefault(who, []).append(page)
                out.append((page, view))
            return out

        with ThreadPoolExecutor(users) as pool:
            done = [s for lst in pool.map(user, range(users)) for s in lst]
        return [p for p, _ in done], [f for _, f in done]

    def views(self, n: int, rounds: int) -> list[tuple[str, float, float]]:
        """One user's views: (role, page ms, page-and-panels ms)."""
        out = []
        for i in range(rounds):
            who = list(PAGES)[(n + i) % 4]
            t0 = time.perf_counter()
            r = self.clients[who].get(PAGES[who])
            t1 = time.perf_counter()
            assert r.status_code == 200, r.status_code
            for u in self.panels[who]:
                assert self.clients[who].get(u).status_code == 200, u
            out.append((who, (t1 - t0) * 1000, (time.perf_counter() - t0) * 1000))
        return out

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 1)


def _p50(samples: list[float]) -> float:
    return round(sorted(samples)[len(samples) // 2], 1)


def run(quick: bool = False) -> Path:
    baseline = os.environ.get("PDX_BENCH_CONSOLE_BASELINE")
    targets = [Target("current", WORK / "console", 8790, None)]
    if baseline:
        targets.insert(0, Target("baseline", WORK / "console-baseline", 8791, Path(baseline)))
    rounds = 3 if quick else 15
    users = 20
    history = 10 if quick else 40
    pages: dict[str, list[float]] = {t.name: [] for t in targets}
    views: dict[str, list[float]] = {t.name: [] for t in targets}
    kb: dict[str, float] = {}
    try:
        for t in targets:
            t.start()
            kb[t.name] = t.first_load_kb()
            # Warm-up, and a history: each role has used its page a while (the same views
            # on both servers), so the pages read a log with something in it.
            for n in range(history):
                t.views(n, 4)
            t.by_page.clear()
        for _ in range(2):  # alternating phases: both see the same machine load
            for t in targets:
                page, view = t.phase(max(1, rounds // 2 + rounds % 2), users)
                pages[t.name] += page
                views[t.name] += view
    finally:
        for t in targets:
            t.stop()
    p95 = _p95(pages["current"])
    first_kb = kb["current"]
    metrics = {
        "console_page_p95_ms": Metric(p95, "ms", "< 300", p95 < 300),
        "console_page_p50_ms": Metric(_p50(pages["current"]), "ms"),
        "console_full_view_p95_ms": Metric(_p95(views["current"]), "ms"),
        "console_first_load_kb": Metric(round(first_kb, 1), "KB", "< 500", first_kb < 500),
    }
    for t in targets:
        prefix = "" if t.name == "current" else "baseline_"
        for who, samples in sorted(t.by_page.items()):
            metrics[f"{prefix}p95_ms_{PAGES[who].rsplit('/', 1)[-1]}"] = Metric(_p95(samples), "ms")
    if baseline:
        metrics["baseline_console_page_p95_ms"] = Metric(_p95(pages["baseline"]), "ms")
        metrics["baseline_console_full_view_p95_ms"] = Metric(_p95(views["baseline"]), "ms")
        metrics["baseline_console_first_load_kb"] = Metric(round(kb["baseline"], 1), "KB")
    return write(
        "console",
        {
            "users": users,
            "views_per_user": 2 * max(1, rounds // 2 + rounds % 2),
            "pages": list(PAGES.values()),
            "quick": quick,
            "baseline": baseline,
            "history_views": history * 4,
            "lazy_panels": {t.name: sum(map(len, t.panels.values())) for t in targets},
        },
        metrics,
    )
