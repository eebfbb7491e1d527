"""Fault tests' cluster: real gateways and workers (subprocesses) on one PostgreSQL, kill -9.

Every process shares one `$PDX_HOME` (objects, keys: as a shared filesystem would) and
one database; each is `pdx run` or `pdx worker` as an operator would start it. Helpers
here build the data a job needs over HTTP, find a job's decrypted inputs on the
memory-backed job directory, and check the invariants the issue names afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from gateway.platform import database_url
from tests.helpers.i11_people import onboard_first_admin
from tests.helpers.net import free_port

PDX = [sys.executable, "-m", "gateway.cli"]
END_EVENTS = ("computation.released", "computation.review", "computation.failed",
              "computation.rejected")  # fmt: skip


@dataclass
class Proc:
    """One `pdx run` or `pdx worker` process."""

    kind: str
    proc: subprocess.Popen[str]
    log: Path
    port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 60) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-3000:]


@dataclass
class Cluster:
    """Gateways and workers of one store; `env` is what every process gets."""

    home: Path
    db_url: str
    jobs_base: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)
    _n: int = 0

    def _start(self, kind: str, argv: list[str], extra: dict[str, str]) -> Proc:
        self._n += 1
        log = self.home.parent / f"{kind}-{self._n}.log"
        port = free_port() if kind == "gateway" else None
        env = {**self.env, **extra}
        if port is not None:
            env["PDX_PORT"] = str(port)
        with log.open("w") as out:
            proc = subprocess.Popen(
                [*PDX, *argv], env=env, stdout=out, stderr=subprocess.STDOUT, text=True
            )
        p = Proc(kind, proc, log, port)
        self.procs.append(p)
        return p

    def gateway(self, **extra: str) -> Proc:
        p = self._start("gateway", ["run", "--log-level", "warning"], extra)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(p.url + "/healthz", timeout=1).status_code == 200:
                    return p
            except httpx.HTTPError:
                pass
            if p.proc.poll() is not None or time.monotonic() > deadline:
                p.stop()
                pytest.fail(f"gateway did not start: {p.output()}")
            time.sleep(0.2)

    def worker(self, **extra: str) -> Proc:
        p = self._start("worker", ["worker"], extra)
        deadline = time.monotonic() + 120
        while "running" not in p.log.read_text(encoding="utf-8", errors="replace"):
            if p.proc.poll() is not None or time.monotonic() > deadline:
                p.stop()
                pytest.fail(f"worker did not start: {p.output()}")
            time.sleep(0.2)
        return p

    def stop_all(self) -> None:
        for p in self.procs:
            p.stop()

    def creds(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.home / "demo-credentials.json").read_text())
        return data

    def sql(self, query: str, **params: Any) -> list[Any]:
        engine = create_engine(database_url(self.db_url))
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(query), params))
        finally:
            engine.dispose()

    def cli(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*PDX, *argv], env=self.env, capture_output=True, text=True, timeout=300, check=False
        )


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """Env for processes of one store on PostgreSQL with the shared queue (none started)."""
    home = tmp_path / "home"
    jobs_base = Path("/dev/shm") / f"pdx-faults-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "PDX_HOME": str(home),
        "PDX_DATABASE_URL": postgres_url,
        "PDX_HOST": "127.0.0.1",
        "PDX_ANCHOR": "off",
        "PDX_JOB_QUEUE": "procrastinate",
        "PDX_JOB_WORKERS": "0",
        "PDX_JOB_LEASE_S": "6",
        "PDX_JOB_RECOVERY_INTERVAL_S": "1",
        "PDX_JOB_WORKDIR": str(jobs_base),
        "PDX_LEDGER_SEAL_INTERVAL_MS": "100",
    }
    c = Cluster(home, postgres_url, jobs_base, env)
    try:
        yield c
    finally:
        c.stop_all()
        subprocess.run(["rm", "-rf", str(jobs_base)], check=False)


# -- data over HTTP ---------------------------------------------------------------------


def login(client: httpx.Client, creds: dict[str, Any], name: str) -> dict[str, str]:
    c = creds[name]
    r = client.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": c["client_id"],
            "client_secret": c["client_secret"],
        },
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def make_org(
    client: httpx.Client, creds: dict[str, Any], name: str, kind: str
) -> tuple[str, dict[str, str]]:
    """A new organisation and a logged-in client of it (as tests/test_api_contracts.py)."""
    admin = login(client, creds, "operator-admin")
    r = client.post("/v1/organisations", headers=admin, json={"name": name, "kind": kind})
    assert r.status_code == 201, r.text
    org_id = r.json()["id"]
    role = {"provider": "data-provider", "enterprise": "data-consumer"}[kind]
    person = onboard_first_admin(client, admin, org_id, f"admin-{org_id[:8]}")  # type: ignore[arg-type]
    r = client.post(
        f"/v1/organisations/{org_id}/clients",
        headers=person,
        json={"name": f"{name} client", "roles": [role]},
    )
    assert r.status_code == 201, r.text
    c = r.json()
    token = login(client, {"c": c}, "c")
    return org_id, token


def open_csv(marker: str, rows: int) -> str:
    """Open ward readings; every row carries `marker`, so plaintext is found wherever it is."""
    lines = ["ref,systolic_bp,age,readmitted"]
    for i in range(rows):
        age = 20 + (i * 7) % 70
        bp = 100 + (i * 13) % 60
        lines.append(f"{marker}{i:06d},{bp},{age},{int(bp + age > 160)}")
    return "\n".join(lines) + "\n"


def open_metadata(name: str) -> dict[str, Any]:
    """Metadata of an open (general-1) dataset."""
    return {
        "name": name,
        "classification_path": ["health", "hospital care", "ward readings"],
        "level": "general-1",
        "impact_object": "public-interest",
        "impact_degree": "general",
        "source_agency": "District hospital",
        "accountable_department": "Medical records office",
        "pi": False,
        "sensitive_pi": False,
        "share_attribute": "unconditional",
        "open_attribute": "open",
    }


def register_open(
    client: httpx.Client, headers: dict[str, str], csv: str, name: str
) -> dict[str, Any]:
    files = {
        "metadata": (None, json.dumps(open_metadata(name)), "application/json"),
        "file": ("data.csv", csv.encode(), "text/csv"),
    }
    r = client.post("/v1/datasets", headers=headers, files=files, timeout=120)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


LONG_FL = {
    "features": ["systolic_bp", "age"],
    "label": "readmitted",
    "rounds": 200,
    "local_epochs": 200,
    "early_stopping": False,
}
"""A federated job that runs for tens of seconds: time to kill its worker mid-run."""


def wait_state(
    client: httpx.Client, headers: dict[str, str], comp_id: str, states: tuple[str, ...], s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + s
    while True:
        r = client.get(f"/v1/computations/{comp_id}", headers=headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["state"] in states:
            return body
        assert time.monotonic() < deadline, f"still {body['state']}: {body['transitions']}"
        time.sleep(0.2)


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (from /proc: the sandboxes a gateway started)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent]
        found += children
        frontier += children
    return found


# -- where plaintext could be -----------------------------------------------------------


def job_inputs(base: Path) -> list[Path]:
    """Decrypted input files in the job directories under `base` (any process's)."""
    return [p for p in base.glob("pdx-jobs-*/p-*/job-*/*") if p.is_file()]


def owner_pid(path: Path) -> int:
    """The pid in a process directory's name (`p-<host>-<pid>-<random>`)."""
    for part in path.parts:
        if part.startswith("p-"):
            return int(part.split("-")[-2])
    raise AssertionError(f"{path} is not in a process directory")


def files_containing(roots: list[Path], marker: str) -> list[Path]:
    """Every regular file under `roots` whose bytes contain `marker`."""
    found: list[Path] = []
    needle = marker.encode()
    for root in roots:
        if not root.exists():
            continue
        for path in [root] if root.is_file() else root.rglob("*"):
            try:
                if path.is_file() and needle in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


def plaintext_roots(cluster: Cluster) -> list[Path]:
    """Where the platform writes: its home, the job directories, the sandbox run dirs."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    return [cluster.home, cluster.jobs_base, *tmp.glob("pdx-sandbox-*")]


# -- the invariants after the faults ----------------------------------------------------


def check_store(cluster: Cluster) -> None:
    """Datasets = registrations, audit = ledger, one end per job, and the export verifies."""
    datasets = cluster.sql("SELECT count(*) FROM datasets")[0][0]
    registered = cluster.sql(
        "SELECT count(*) FROM ledger_entries WHERE type = 'dataset.registered'"
    )[0][0]
    assert datasets == registered, (datasets, registered)
    entries = cluster.sql("SELECT count(*) FROM ledger_entries")[0][0]
    audited = cluster.sql(
        "SELECT count(DISTINCT ledger_index) FROM audit_records WHERE ledger_index IS NOT NULL"
    )[0][0]
    assert audited == entries, (audited, entries)
    ends = cluster.sql(
        "SELECT object_id, count(*) FROM ledger_entries WHERE type = ANY(:types) "
        "GROUP BY object_id HAVING count(*) > 1",
        types=list(END_EVENTS),
    )
    assert ends == [], f"jobs with two end states: {ends}"
    partial = list(cluster.home.rglob("*.partial"))
    assert partial == [], partial
    out = cluster.home.parent / f"export-{uuid.uuid4().hex[:6]}"
    done = cluster.cli("ledger", "export", "--out", str(out))
    assert done.returncode == 0, done.stderr
    key = cluster.cli("ledger", "verifier-key")
    assert key.returncode == 0, key.stderr
    verified = cluster.cli("audit", "verify", str(out), "--pubkey", key.stdout.strip())
    assert verified.returncode == 0, verified.stdout + verified.stderr
