"""`pdx bench sdk`: a DP mean over three providers through the SDK, and the SDK's overhead.

A real server (`pdx run` on loopback, embedded store in a scratch home). Three hospitals
register `rows` readings each and sign agreements; then, alternating in the same run,
the enterprise asks `stats.mean` (general-4: every hospital approves the run and the
release) once through `pdx_client` and once through a plain httpx script making the
same calls. Timed: request to result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.report import Metric, median, write
from exchange.jobs import DEFAULT_EPSILON_BUDGET
from gateway.demo_compute import admit, ward_metadata, ward_readings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))
from pdx_client import Enterprise, Provider  # noqa: E402

PURPOSE = "cardiovascular readmission research"
PARAMS = {"columns": ["systolic_bp"], "clip": [60.0, 240.0]}
# Each repeat runs two jobs (SDK, raw) of ε 0.5 (general-4's obligation) on the same
# datasets; a dataset's budget allows DEFAULT_EPSILON_BUDGET, so after this many repeats
# the hospitals register a fresh set (the full run's five repeats once ran out at the 4th).
REPEATS_PER_SET = int(DEFAULT_EPSILON_BUDGET // (2 * 0.5))


def _serve(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "PDX_HOME": str(home), "PDX_PORT": str(port)}
    env.pop("PDX_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "run", "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("server did not start")


def _raw_mean(url: str, ent: dict[str, str], hosp: list[dict[str, str]], inputs: list[str]) -> Any:
    """The same job as `Enterprise.compute`, as a plain httpx script."""
    with httpx.Client(base_url=url, timeout=600) as http:

        def token(c: dict[str, str]) -> dict[str, str]:
            form = {
                "grant_type": "client_credentials",
                **{k: c[k] for k in ("client_id", "client_secret")},
            }
            return {
                "Authorization": "Bearer "
                + http.post("/v1/auth/token", data=form).json()["access_token"]
            }

        e = token(ent)
        hs = [token(h) for h in hosp]
        body = {"operator": "stats.mean", "inputs": inputs, "params": PARAMS, "purpose": PURPOSE}
        job = http.post("/v1/computations", headers=e, json=body).json()
        delay = 0.2
        approved: set[str] = set()
        while job["state"] not in ("released", "rejected", "failed"):
            if job["state"] in ("awaiting-approval", "review") and job["state"] not in approved:
                for h in hs:
                    http.post(f"/v1/computations/{job['id']}/approve", headers=h)
                approved.add(job["state"])
                delay = 0.2  # a new wait, as `Enterprise.compute` starts one per stage
            else:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
            job = http.get(f"/v1/computations/{job['id']}", headers=e).json()
        return http.get(f"/v1/computations/{job['id']}/result", headers=e).json()


def _register(
    enterprise: Enterprise,
    providers: list[Provider],
    hosp: list[dict[str, str]],
    rows: int,
    n: int,
) -> list[str]:
    """Each hospital registers `rows` readings and signs an agreement: the job's inputs."""
    inputs = []
    for i, p in enumerate(providers):
        meta = ward_metadata(f"bench wards {i}.{n}", f"Bench {i}")
        ds = p.register(meta, ward_readings(i, rows).encode())
        deal = enterprise.propose_agreement(
            hosp[i]["org"], [ds.id], PURPOSE, agreement_id=f"DUA-BENCH-{i}-{n}"
        )
        p.sign_agreement(deal.id)
        inputs.append(ds.id)
    return inputs


def run(quick: bool = False) -> Path:
    rows = 1_000 if quick else 100_000
    repeats = 2 if quick else 5
    with tempfile.TemporaryDirectory(prefix="pdx-bench-sdk-") as tmp:
        proc, url = _serve(Path(tmp) / "home")
        try:
            creds = json.loads((Path(tmp) / "home" / "demo-credentials.json").read_text())
            with httpx.Client(base_url=url, timeout=600) as http:
                a = creds["operator-admin"]
                form = {
                    "grant_type": "client_credentials",
                    "client_id": a["client_id"],
                    "client_secret": a["client_secret"],
                }
                admin = {
                    "Authorization": "Bearer "
                    + http.post("/v1/auth/token", data=form).json()["access_token"]
                }
                ent = admit(http, admin, "Bench Analytics", "enterprise")
                hosp = [admit(http, admin, f"Bench Hospital {i}", "provider") for i in range(3)]
            enterprise = Enterprise.login(url, ent["client_id"], ent["client_secret"])
            providers = [Provider.login(url, h["client_id"], h["client_secret"]) for h in hosp]
            sdk_s: list[float] = []
            raw_s: list[float] = []
            inputs: list[str] = []
            for r in range(repeats):
                if r % REPEATS_PER_SET == 0:  # a fresh set before the datasets' ε runs out
                    inputs = _register(enterprise, providers, hosp, rows, r // REPEATS_PER_SET)
                t0 = time.perf_counter()
                enterprise.compute("stats.mean", inputs, PARAMS, PURPOSE, approvers=providers)
                sdk_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                _raw_mean(url, ent, hosp, inputs)
                raw_s.append(time.perf_counter() - t0)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    ratio = median(sdk_s) / median(raw_s)
    return write(
        "sdk",
        {"providers": 3, "rows_per_provider": rows, "operator": "stats.mean", "repeats": repeats},
        {
            "sdk_end_to_end_stats_s": Metric(median(sdk_s), "s"),
            "sdk_overhead_vs_raw_http_ratio": Metric(ratio, "ratio", "<= 1.2", ratio <= 1.2),
        },
    )
