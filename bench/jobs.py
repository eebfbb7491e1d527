"""Job queue throughput and recovery (issue 13): procrastinate on PostgreSQL.

* `jobs_per_s_1_worker`, `jobs_per_s_4_workers`: small `stats.count` jobs on an `open`
  dataset, all queued first (no worker running), then drained by 1 and by 4 workers of
  one process (each job: lease, decrypt to the memory-backed job directory, sandbox run,
  release, ledger entries). Alternated over `runs` rounds; medians reported.
* `worker_scaling_4_vs_1`: their ratio.
* `recovery_s_after_kill`: a `pdx worker` subprocess is killed (SIGKILL) while it runs a
  job; from the moment its lease expired to the job running again on another worker
  (the `recovered` transition), with recovery passes every `PDX_JOB_RECOVERY_INTERVAL_S`.

Needs PostgreSQL: PDX_BENCH_POSTGRES_URL (or PDX_TEST_POSTGRES_URL); a database is
created for the run and dropped after.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text

from bench.report import WORK, Metric, median, write
from exchange.models import Computation, ComputationLease
from gateway.app import create_app
from gateway.platform import Platform, build_platform, database_url, initialise
from gateway.settings import Settings

TERMINAL = ("released", "review", "rejected", "failed")
LEASE_S = 6
RECOVERY_INTERVAL_S = 1


def _login(api: TestClient, creds: dict[str, Any], name: str) -> dict[str, str]:
    c = creds[name]
    r = api.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": c["client_id"],
            "client_secret": c["client_secret"],
        },
    )
    r.raise_for_status()
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _open_dataset(api: TestClient, headers: dict[str, str], rows: int) -> str:
    import json

    meta = {
        "name": "bench open ridership",
        "classification_path": ["transport", "ridership"],
        "level": "general-1",
        "impact_object": "public-interest",
        "impact_degree": "general",
        "source_agency": "Transport bureau",
        "accountable_department": "Statistics office",
        "pi": False,
        "sensitive_pi": False,
        "share_attribute": "unconditional",
        "open_attribute": "open",
    }
    lines = ["station,riders,minutes"]
    lines += [f"S{i % 7},{10 + i % 13},{5 + i % 11}" for i in range(rows)]
    files = {
        "metadata": (None, json.dumps(meta), "application/json"),
        "file": ("d.csv", ("\n".join(lines) + "\n").encode(), "text/csv"),
    }
    r = api.post("/v1/datasets", headers=headers, files=files)
    if r.status_code != 201:
        raise RuntimeError(r.text)
    ds_id: str = r.json()["id"]
    return ds_id


def _request(api: TestClient, headers: dict[str, str], ds_id: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        r = api.post(
            "/v1/computations",
            headers=headers,
            json={"operator": "stats.count", "inputs": [ds_id], "purpose": "bench throughput"},
        )
        if r.status_code != 201:
            raise RuntimeError(r.text)
        ids.append(r.json()["id"])
    return ids


def _wait_terminal(platform: Platform, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with platform.session() as s:
            states = list(s.scalars(select(Computation.state).where(Computation.id.in_(ids))))
        if all(st in TERMINAL for st in states):
            bad = [st for st in states if st != "released"]
            if bad:
                raise RuntimeError(f"jobs ended {bad}")
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs not done in {timeout} s: {states}")
        time.sleep(0.05)


def _drain(platform: Platform, api: TestClient, who: dict[str, str], ds: str, workers: int,
           jobs: int) -> float:  # fmt: skip
    """Jobs per second: `jobs` queued with no worker, then drained by `workers`."""
    assert platform.jobs is not None
    queue: Any = platform.jobs.queue
    ids = _request(api, who, ds, jobs)
    queue.workers = workers
    start = time.perf_counter()
    queue.start()
    try:
        _wait_terminal(platform, ids, timeout=60 + jobs * 20)
        elapsed = time.perf_counter() - start
    finally:
        queue.stop()
        queue.workers = 0
    return jobs / elapsed


def _recovery(platform: Platform, api: TestClient, who: dict[str, str], ds: str) -> float:
    """Seconds from a killed worker's lease expiry to its job running again here."""
    assert platform.jobs is not None
    queue: Any = platform.jobs.queue
    env = {
        **os.environ,
        "PDX_HOME": str(platform.settings.home),
        "PDX_DATABASE_URL": platform.settings.database_url,
        "PDX_JOB_QUEUE": "procrastinate",
        "PDX_JOB_LEASE_S": str(LEASE_S),
        "PDX_JOB_RECOVERY_INTERVAL_S": str(RECOVERY_INTERVAL_S),
        "PDX_ANCHOR": "off",
    }
    log = WORK / "jobs" / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "worker", "--concurrency", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "running" not in log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        (comp_id,) = _request(api, who, ds, 1)
        expires: datetime | None = None
        deadline = time.monotonic() + 120
        while expires is None:
            with platform.session() as s:
                expires = s.scalar(
                    select(ComputationLease.expires_at).where(
                        ComputationLease.computation_id == comp_id
                    )
                )
            if time.monotonic() > deadline:
                raise RuntimeError("the worker never took the job")
            time.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
        with platform.session() as s:  # the last renewal the dead worker made
            expires = s.scalar(
                select(ComputationLease.expires_at).where(
                    ComputationLease.computation_id == comp_id
                )
            )
        queue.workers = 1
        platform.jobs.recovery.start()
        queue.start()
        try:
            _wait_terminal(platform, [comp_id], timeout=120)
        finally:
            queue.stop()
            platform.jobs.recovery.stop()
            queue.workers = 0
        with platform.session() as s:
            comp = s.get(Computation, comp_id)
            assert comp is not None
            recovered = [t for t in comp.transitions if t["event"] == "recovered"]
        if not recovered or expires is None:
            raise RuntimeError("the job ended before the kill; no recovery to time")
        at = datetime.fromisoformat(recovered[0]["at"])
        return (at - expires).total_seconds()
    finally:
        if worker.poll() is None:
            worker.kill()


def run(quick: bool = False) -> Path:
    url = os.environ.get("PDX_BENCH_POSTGRES_URL") or os.environ.get("PDX_TEST_POSTGRES_URL")
    if not url:
        raise SystemExit("pdx bench jobs needs PostgreSQL: set PDX_BENCH_POSTGRES_URL")
    jobs, runs = (8, 1) if quick else (24, 3)
    work = WORK / "jobs"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    admin = create_engine(database_url(url), isolation_level="AUTOCOMMIT")
    name = f"pdx_bench_jobs_{uuid.uuid4().hex[:8]}"
    base, _, _ = url.rpartition("/")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        settings = Settings(
            home=work / "home",
            database_url=f"{base}/{name}",
            job_queue="procrastinate",
            job_workers=0,
            job_lease_s=LEASE_S,
            job_recovery_interval_s=RECOVERY_INTERVAL_S,
            quota_queued_per_org=10_000,
            quota_running_per_org=16,
        )
        platform = build_platform(settings)
        creds = initialise(platform)
        assert creds is not None
        platform.compute.paillier_bits = 1024
        one: list[float] = []
        four: list[float] = []
        with TestClient(create_app(platform)) as api:
            prov = _login(api, creds, "provider-transport")
            ent = _login(api, creds, "enterprise-fintech")
            ds = _open_dataset(api, prov, 200)
            _drain(platform, api, ent, ds, 1, 2)  # warm-up: imports, first sandbox start
            for _ in range(runs):
                one.append(_drain(platform, api, ent, ds, 1, jobs))
                four.append(_drain(platform, api, ent, ds, 4, jobs))
            recovery = _recovery(platform, api, ent, ds)
        platform.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    j1, j4 = median(one), median(four)
    scaling = j4 / j1
    return write(
        "jobs",
        {
            "quick": quick,
            "jobs_per_run": jobs,
            "runs": runs,
            "operator": "stats.count",
            "rows": 200,
            "paillier_bits": 1024,
            "queue": "procrastinate",
            "lease_s": LEASE_S,
            "recovery_interval_s": RECOVERY_INTERVAL_S,
            "samples_1_worker": [round(x, 3) for x in one],
            "samples_4_workers": [round(x, 3) for x in four],
            "load_average": list(os.getloadavg()),
            "bound": "CPU: each job starts a sandboxed Python (bwrap) and generates a "
            "Paillier key; with 2 cores, 4 workers can at most double 1 worker's rate",
        },
        {
            "jobs_per_s_1_worker": Metric(round(j1, 3), "jobs/s"),
            "jobs_per_s_4_workers": Metric(round(j4, 3), "jobs/s"),
            "worker_scaling_4_vs_1": Metric(round(scaling, 2), "x", ">= 1.7", scaling >= 1.7),
            "recovery_s_after_kill": Metric(round(recovery, 2), "s", "< 30", recovery < 30),
        },
    )
