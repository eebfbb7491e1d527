"""A quick local reproduction of the credential-flood scenario: a legit login timed under a flood.

Starts `pdx run` as a real subprocess (fresh embedded home), then: a quiet phase of the
legitimate client (enterprise-fintech, right secret, from 127.0.0.2), and a flood phase in
which `--flooders` threads post wrong secrets from 127.0.0.1 (half for the legitimate
client's id, half for made-up ids) with no think time while the legitimate client keeps
logging in every `--pace` seconds. Prints the legitimate client's percentiles, the flood's
status counts and rate, and how many audit rows the flood wrote. Not a test: for
before/after comparisons on one machine, run it a few times in the same conditions.

    .venv/bin/python -m loadtest.token_flood --flooders 30 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

from tests.helpers import server as real_server

FLOOD_ADDRESS = "127.0.0.1"
PROBE_ADDRESS = "127.0.0.2"


def _post(c: httpx.Client, client_id: str, secret: str) -> int:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    return c.post("/v1/auth/token", data=form).status_code


def _client(url: str, source: str) -> httpx.Client:
    return httpx.Client(
        base_url=url, transport=httpx.HTTPTransport(local_address=source), timeout=60
    )


def _pct(values: list[float], q: float) -> float:
    ranked = sorted(values)
    return ranked[max(1, min(len(ranked), math.ceil(q / 100 * len(ranked)))) - 1]


def _summary(name: str, lat: list[float], refused: Counter[int]) -> str:
    if not lat:
        return f"{name}: no samples"
    return (
        f"{name}: n={len(lat)} p50={statistics.median(lat):.1f} p90={_pct(lat, 90):.1f} "
        f"p99={_pct(lat, 99):.1f} max={max(lat):.1f} ms refused={dict(refused)}"
    )


def _probe(
    url: str,
    victim: dict[str, str],
    stop: threading.Event,
    pace: float,
    lat: list[float],
    refused: Counter[int],
) -> None:
    with _client(url, PROBE_ADDRESS) as c:
        while not stop.is_set():
            started = time.perf_counter()
            status = _post(c, victim["client_id"], victim["client_secret"])
            elapsed = time.perf_counter() - started
            lat.append(elapsed * 1000)
            if status != 200:
                refused[status] += 1
            stop.wait(max(0.0, pace - elapsed))


def _audit_rows(home: Path) -> Counter[str]:
    db = sqlite3.connect(home / "pdx.db", timeout=30)
    try:
        rows = db.execute("SELECT event_type, count(*) FROM audit_records GROUP BY event_type")
        return Counter({str(k): int(n) for k, n in rows})
    finally:
        db.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--flooders", type=int, default=30)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--quiet-seconds", type=float, default=8)
    p.add_argument("--pace", type=float, default=0.25, help="seconds between legit logins")
    p.add_argument("--profile", type=Path, help="py-spy the server under the flood into this file")
    args = p.parse_args()
    # The probe paces within its own token budget (PDX_TOKEN_RATE_PER_MIN).
    env = {"PDX_TOKEN_RATE_PER_MIN": str(max(120, math.ceil(60 / args.pace) * 2))}
    with tempfile.TemporaryDirectory(prefix="pdx-token-flood-") as tmp:
        server = real_server.start_server(Path(tmp) / "home", env)
        try:
            creds = json.loads((server.home / "demo-credentials.json").read_text())
            victim = creds["enterprise-fintech"]
            stop = threading.Event()
            quiet = _probe_for(server.url, victim, args.quiet_seconds, args.pace)
            print(_summary("legit quiet        ", *quiet), flush=True)

            rows_before = _audit_rows(server.home)
            statuses: Counter[int] = Counter()
            lock = threading.Lock()

            def flood(n: int) -> None:
                with _client(server.url, FLOOD_ADDRESS) as c:
                    i = 0
                    while not stop.is_set():
                        cid = victim["client_id"] if i % 2 else f"pdx-{uuid.uuid4().hex[:16]}"
                        status = _post(c, cid, uuid.uuid4().hex)
                        with lock:
                            statuses[status] += 1
                        i += 1

            threads = [threading.Thread(target=flood, args=(n,)) for n in range(args.flooders)]
            started = time.monotonic()
            for t in threads:
                t.start()
            time.sleep(2)  # the flood is under way
            spy = None
            if args.profile is not None:
                spy = subprocess.Popen(
                    [
                        os.environ.get("PY_SPY", "py-spy"),
                        "record",
                        "--pid",
                        str(server.proc.pid),
                        "--duration",
                        str(int(args.seconds)),
                        "--format",
                        "raw",
                        "--output",
                        str(args.profile),
                        "--threads",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            loaded = _probe_for(server.url, victim, args.seconds, args.pace)
            stop.set()
            for t in threads:
                t.join(timeout=120)
            if spy is not None:
                spy.wait(timeout=120)
            elapsed = time.monotonic() - started
            print(_summary("legit under flood  ", *loaded), flush=True)
            total = sum(statuses.values())
            print(
                f"flood: {total} requests, {total / elapsed:.0f} req/s, statuses={dict(statuses)}",
                flush=True,
            )
            rows = _audit_rows(server.home)
            rows.subtract(rows_before)
            print(f"audit rows written during the flood: {+rows}")
            print(f"load average: {os.getloadavg()}")
        finally:
            server.stop()


def _probe_for(
    url: str, victim: dict[str, str], seconds: float, pace: float
) -> tuple[list[float], Counter[int]]:
    stop = threading.Event()
    lat: list[float] = []
    refused: Counter[int] = Counter()
    t = threading.Thread(target=_probe, args=(url, victim, stop, pace, lat, refused))
    t.start()
    time.sleep(seconds)
    stop.set()
    t.join(timeout=120)
    return lat, refused


if __name__ == "__main__":
    main()
