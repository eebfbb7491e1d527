"""`python -m loadtest.run`: start pdx, seed it, run Locust headless, write bench/results/load.json.

Steps (docs/benchmarks.md format, area `load`):

1. Start two servers on free loopback ports, each with a fresh `PDX_HOME` (embedded
   SQLite, demo organisations seeded): A as configured, B with `PDX_UNSAFE_BENCH_NO_PEP=1`
   (the gateway skips the policy enforcement point there, token checks still run, and
   only with `PDX_ENV=development`). `--url` targets a running server instead (no B).
2. Seed each with a few small datasets (so details, ledger entries and proofs exist).
3. Warm up, then run the realistic mix (`loadtest/locustfile.py`, all user classes)
   against A: `rps`, `p50_ms`, `p99_ms`, `failures` come from this run.
4. Run the read-only classes (`CatalogReader LedgerAuditor`) against A and B in
   alternating rounds; `zero_trust_overhead_ratio` = median rps(A) / median rps(B).
   The servers and Locust share the machine, so a ratio measured in one run is what
   survives the noise (docs/benchmarks.md).

5. Fair use (issue 11, `loadtest/fairuse.py`), on a third, single-process server: a
   tenant's `stats.count` p95 (request → released) alone and under another tenant's
   computation flood → `fair_share_victim_p95_ratio`; a legitimate client's token p99
   while many users post wrong secrets → `token_p99_ms_under_credential_flood`.

`--only mix|fair-use` runs one part and only prints (load.json keeps whole runs).
`--quick` is a 10-second smoke run. Server CPU per request (psutil) and the machine's
load average go into `params`, since the figures mean little without them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from gateway.demo import transit_metadata

REPO = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO / "loadtest" / "locustfile.py"
EXAMPLE_CSV = REPO / "examples" / "transit_trips.csv"
MIX_CLASSES = ("CatalogReader", "LedgerAuditor", "Provider", "TokenClient")
READ_CLASSES = ("CatalogReader", "LedgerAuditor")
NO_PEP_ENV = "PDX_UNSAFE_BENCH_NO_PEP"
TARGET_RPS = 1000.0
TARGET_P99_MS = 100.0


class LoadError(Exception):
    """The load test could not run; the message says which step."""


# -- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_from_env() -> Any:
    """Uvicorn `--factory` target for `--server-workers` > 1: one platform per worker.

    The parent ran `pdx init` first, so each worker's `initialise` (what `pdx run` does
    before serving: it also loads the policy decision point) finds migrations, keys,
    policies and demo organisations in place. Every worker runs a ledger sealer, which
    the sealer supports (it retries a lost race).
    """
    from gateway.app import create_app
    from gateway.platform import build_platform, initialise
    from gateway.settings import Settings

    platform = build_platform(Settings.from_env())
    initialise(platform)
    return create_app(platform)


@dataclass
class Server:
    """A pdx server in a subprocess with its own PDX_HOME."""

    name: str
    home: Path
    port: int
    env: dict[str, str]
    workers: int = 1
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> Path:
        return self.home / "demo-credentials.json"

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.log = self.home.parent / f"server-{self.name}.log"
        out = open(self.log, "wb")  # noqa: SIM115 - closed with the process
        if self.workers == 1:
            # What `pdx run` does, nothing else.
            cmd = [sys.executable, "-m", "gateway.cli", "run", "--port", str(self.port)]
            cmd += ["--host", "127.0.0.1", "--log-level", "warning"]
        else:
            subprocess.run(
                [sys.executable, "-m", "gateway.cli", "init"],
                env=self.env,
                cwd=REPO,
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            cmd = [sys.executable, "-m", "uvicorn", "--factory", "loadtest.run:app_from_env"]
            cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
            cmd += ["--workers", str(self.workers), "--log-level", "warning"]
        self.proc = subprocess.Popen(
            cmd, env=self.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )
        out.close()

    def wait_healthy(self, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise LoadError(f"server {self.name} exited; see {self.log}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    if self.credentials.exists():
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise LoadError(f"server {self.name} not healthy after {timeout:.0f} s; see {self.log}")

    def _processes(self) -> list[Any]:
        """The server process and its workers (psutil), empty when not running."""
        import psutil

        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its worker processes so far."""
        import psutil

        total = 0.0
        for p in self._processes():
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total

    def rss_mb(self) -> float:
        """Resident memory of the server and its worker processes now, in MB."""
        import psutil

        total = 0
        for p in self._processes():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return round(total / 1e6, 1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # uvicorn shuts down gracefully, sealer included
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def server_env(home: Path, port: int, *, token_ttl_s: int, no_pep: bool) -> dict[str, str]:
    # Nothing from the caller's PDX_* settings leaks in (a PDX_DATABASE_URL would).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDX_")}
    env.update(
        PDX_HOME=str(home),
        PDX_PORT=str(port),
        PDX_HOST="127.0.0.1",
        PDX_ENV="development",
        PDX_SEED_DEMO="1",
        PDX_TOKEN_TTL_S=str(token_ttl_s),
        PYTHONPATH=str(REPO),
    )
    if no_pep:
        env[NO_PEP_ENV] = "1"
    return env


# -- payloads (shared with the locustfile, which imports them from here) -------------------------


def small_csv(rows: int) -> bytes:
    """The header and the first `rows` rows of examples/transit_trips.csv."""
    with open(EXAMPLE_CSV, encoding="utf-8", newline="") as f:
        return "".join(islice(f, rows + 1)).encode("utf-8")


def dataset_metadata(name: str, level: str = "general-4") -> dict[str, Any]:
    """GRD-02 metadata for the transit sample (it holds ID numbers: general-4)."""
    return transit_metadata(name, level, description="load-test sample of transit-card trips")


def multipart(metadata: dict[str, Any], content: bytes, filename: str) -> tuple[bytes, str]:
    """A multipart/form-data body with `metadata` (JSON) and `file` (CSV) parts."""
    boundary = os.urandom(16).hex()
    meta = json.dumps(metadata, ensure_ascii=False).encode("utf-8")
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="metadata"\r\n',
            b"Content-Type: application/json\r\n\r\n",
            meta,
            f"\r\n--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode(),
            b"Content-Type: text/csv\r\n\r\n",
            content,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    return body, f"multipart/form-data; boundary={boundary}"


# -- seeding -----------------------------------------------------------------------------------


def seed(url: str, credentials: Path, count: int) -> int:
    """Register `count` small datasets as provider-transport; returns how many are listed."""
    import httpx

    creds = json.loads(credentials.read_text(encoding="utf-8"))["provider-transport"]
    content = small_csv(50)
    with httpx.Client(base_url=url, timeout=60) as client:
        r = client.post(
            "/v1/auth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
            },
        )
        if r.status_code != 200:
            raise LoadError(f"seeding: login refused ({r.status_code} {r.text[:200]})")
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        for i in range(count):
            meta = dataset_metadata(f"loadtest-seed-{i}-{os.urandom(3).hex()}")
            body, ctype = multipart(meta, content, "seed.csv")
            r = client.post(
                "/v1/datasets", headers={**headers, "Content-Type": ctype}, content=body
            )
            if r.status_code != 201:
                raise LoadError(f"seeding: registration refused ({r.status_code} {r.text[:300]})")
        listed = client.get("/v1/datasets", headers=headers, params={"limit": 500})
        return int(listed.json()["total"])


# -- locust ------------------------------------------------------------------------------------


@dataclass
class Stats:
    """One Locust run's aggregate and per-endpoint figures (from its `_stats.csv`)."""

    requests: int
    failures: int
    rps: float
    p50_ms: float
    p99_ms: float
    seconds: float
    server_cpu_s: float = 0.0
    endpoints: dict[str, dict[str, float]] = field(default_factory=dict)
    # Locust's failure table ("METHOD name: error" -> occurrences): a failure is named, not
    # just counted, even when the work directory is removed after the run.
    failure_table: dict[str, int] = field(default_factory=dict)

    @property
    def server_cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / self.requests if self.requests else 0.0


def _float(row: dict[str, str], key: str) -> float:
    value = row.get(key, "")
    return float(value) if value not in ("", "N/A") else 0.0


def parse_failures(path: Path) -> dict[str, int]:
    """Locust's `_failures.csv`: one row per (method, name, error) with its occurrences."""
    if not path.exists():
        return {}
    table: dict[str, int] = {}
    for row in csv.DictReader(path.open(encoding="utf-8")):
        key = f"{row.get('Method', '')} {row.get('Name', '')}: {row.get('Error', '')}"
        table[key] = table.get(key, 0) + int(_float(row, "Occurrences"))
    return table


def parse_stats(path: Path) -> Stats:
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    endpoints: dict[str, dict[str, float]] = {}
    aggregate: dict[str, str] | None = None
    for row in rows:
        if row["Name"] == "Aggregated":
            aggregate = row
            continue
        endpoints[f"{row['Type']} {row['Name']}"] = {
            "requests": _float(row, "Request Count"),
            "failures": _float(row, "Failure Count"),
            "rps": round(_float(row, "Requests/s"), 1),
            "p50_ms": _float(row, "50%"),
            "p99_ms": _float(row, "99%"),
        }
    if aggregate is None:
        raise LoadError(f"no Aggregated row in {path}")
    return Stats(
        requests=int(_float(aggregate, "Request Count")),
        failures=int(_float(aggregate, "Failure Count")),
        rps=_float(aggregate, "Requests/s"),
        p50_ms=_float(aggregate, "50%"),
        p99_ms=_float(aggregate, "99%"),
        seconds=0.0,
        endpoints=endpoints,
    )


@dataclass
class LocustPlan:
    users: int
    spawn_rate: float
    processes: int
    work: Path


def run_locust(
    plan: LocustPlan,
    server_url: str,
    credentials: Path,
    seconds: int,
    classes: tuple[str, ...],
    label: str,
    server: Server | None = None,
    *,
    extra_env: dict[str, str] | None = None,
) -> Stats:
    prefix = plan.work / label
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
    cmd += ["-u", str(plan.users), "-r", str(plan.spawn_rate), "-t", f"{seconds}s"]
    cmd += ["--host", server_url, "--csv", str(prefix), "--only-summary", "--reset-stats"]
    cmd += ["--stop-timeout", "10", "--exit-code-on-error", "0", "--loglevel", "WARNING"]
    if plan.processes > 1:
        cmd += ["--processes", str(plan.processes)]
    cmd += list(classes)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDX_")}
    env["PDX_LOADTEST_CREDENTIALS"] = str(credentials)
    env.update(extra_env or {})
    cpu_before = server.cpu_seconds() if server else 0.0
    started = time.monotonic()
    with open(plan.work / f"{label}.log", "wb") as log:
        done = subprocess.run(
            cmd, cwd=plan.work, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        )
    elapsed = time.monotonic() - started
    if server is not None and server.proc is not None and server.proc.poll() is not None:
        raise LoadError(
            f"server {server.name} exited (code {server.proc.returncode}) during {label}; "
            f"see {server.log}"
        )
    if done.returncode != 0:
        raise LoadError(f"locust {label} exited {done.returncode}; see {plan.work / label}.log")
    stats = parse_stats(Path(f"{prefix}_stats.csv"))
    stats.failure_table = parse_failures(Path(f"{prefix}_failures.csv"))
    stats.seconds = round(elapsed, 1)
    if server is not None:
        stats.server_cpu_s = round(server.cpu_seconds() - cpu_before, 2)
    print(
        f"load: {label:<18} {stats.rps:8.1f} req/s  p50 {stats.p50_ms:5.0f} ms  "
        f"p99 {stats.p99_ms:5.0f} ms  failures {stats.failures}/{stats.requests}  "
        f"server {stats.server_cpu_ms_per_request:.2f} ms CPU/req",
        flush=True,
    )
    for failure, count in stats.failure_table.items():
        print(f"load:   failed {count}x  {failure[:300]}", flush=True)
    return stats


# -- the run -----------------------------------------------------------------------------------


def _no_pep_honoured() -> bool:
    """Whether the gateway reads PDX_UNSAFE_BENCH_NO_PEP yet (else B is the same server as A)."""
    return any(NO_PEP_ENV in p.read_text(encoding="utf-8") for p in (REPO / "gateway").glob("*.py"))


def _machine_load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="10-second smoke run")
    p.add_argument("--url", help="target a running server (no PEP comparison)")
    p.add_argument("--credentials", help="demo credentials file for --url")
    p.add_argument("--users", type=int, default=16, help="concurrent Locust users")
    p.add_argument("--spawn-rate", type=float, default=0, help="users/s (default: all at once)")
    p.add_argument("--duration", type=int, help="seconds of the mix run (default 60; quick 10)")
    p.add_argument("--read-rounds", type=int, help="alternating read rounds per server")
    p.add_argument("--read-duration", type=int, help="seconds per read round")
    p.add_argument("--locust-processes", type=int, default=1, help="locust --processes")
    p.add_argument(
        "--server-workers", type=int, default=2, help="uvicorn workers per server (1 = pdx run)"
    )
    p.add_argument("--token-ttl", type=int, default=60, help="PDX_TOKEN_TTL_S of the servers")
    p.add_argument("--seed-datasets", type=int, default=5)
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--no-write", action="store_true", help="print only; leave load.json alone")
    p.add_argument(
        "--only", choices=("mix", "fair-use"), help="run one part (default: both; --url: mix)"
    )
    p.add_argument("--fair-phase", type=int, help="seconds per fair-use phase (90; quick 20)")
    p.add_argument("--flooders", type=int, default=4, help="computation-flood users")
    p.add_argument("--credential-flooders", type=int, default=12, help="credential-flood users")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    work = REPO / "bench" / "work" / f"load-{stamp}"
    work.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {}
    params: dict[str, Any] = {"quick": args.quick, "machine_load_avg_before": _machine_load()}
    if args.only != "fair-use":
        mix_metrics, mix_params = run_mix(args, work)
        metrics.update(mix_metrics)
        params.update(mix_params)
    if args.only != "mix" and not args.url:
        fair = run_fair_use(args, work)
        metrics.update(fair.metrics)
        params.update(fair.params)
    params["machine_load_avg_after"] = _machine_load()
    # One part alone is a partial result: print it, never overwrite the full load.json.
    _write(metrics, params, dry=args.no_write or args.only is not None)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"load: work files kept in {work}")
    return 0


def run_fair_use(args: argparse.Namespace, work: Path) -> Any:
    """The fair-use scenarios (loadtest/fairuse.py) on their own single-process server."""
    from loadtest import fairuse

    port = free_port()
    home = work / "fair" / "home"
    env = server_env(home, port, token_ttl_s=max(args.token_ttl, 300), no_pep=False)
    server = Server("fair", home, port, env, workers=1)
    plan = LocustPlan(users=1, spawn_rate=1, processes=1, work=work)
    ok = False
    try:
        server.start()
        server.wait_healthy()
        result = fairuse.run_scenarios(
            plan,
            server,
            phase_s=args.fair_phase or (20 if args.quick else 90),
            flooders=args.flooders,
            cred_flooders=args.credential_flooders,
        )
        ok = True
        return result
    finally:
        server.stop()
        if not ok:
            print(f"load: fair use failed; server log and Locust output in {work}", file=sys.stderr)


def run_mix(args: argparse.Namespace, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The realistic mix and the read rounds with and without the enforcement point."""
    quick = args.quick
    duration = args.duration or (10 if quick else 60)
    rounds = args.read_rounds or (1 if quick else 3)
    read_s = args.read_duration or (5 if quick else 15)
    warmup_s = 3 if quick else 5
    plan = LocustPlan(
        users=args.users,
        spawn_rate=args.spawn_rate or args.users,
        processes=args.locust_processes,
        work=work,
    )
    load_before = _machine_load()
    servers: list[Server] = []
    ok = False
    try:
        if args.url:
            creds = Path(args.credentials) if args.credentials else _default_credentials()
            target_url, target_creds, target = args.url, creds, None
            baseline: Server | None = None
        else:
            for name, no_pep in (("pep", False), ("nopep", True)):
                port = free_port()
                home = work / name / "home"
                env = server_env(home, port, token_ttl_s=args.token_ttl, no_pep=no_pep)
                servers.append(Server(name, home, port, env, workers=args.server_workers))
            for s in servers:
                s.start()
            for s in servers:
                s.wait_healthy()
                n = seed(s.url, s.credentials, args.seed_datasets)
                print(f"load: server {s.name} on {s.url}, {n} datasets", flush=True)
            target = servers[0]
            baseline = servers[1]
            target_url, target_creds = target.url, target.credentials

        # Warm-up (connection pools, statement caches), not recorded.
        run_locust(plan, target_url, target_creds, warmup_s, READ_CLASSES, "warmup-a", target)
        if baseline is not None:
            run_locust(
                plan,
                baseline.url,
                baseline.credentials,
                warmup_s,
                READ_CLASSES,
                "warmup-b",
                baseline,
            )

        rss_before = target.rss_mb() if target is not None else None
        mix = run_locust(plan, target_url, target_creds, duration, MIX_CLASSES, "mix", target)

        with_pep: list[Stats] = []
        without_pep: list[Stats] = []
        for i in range(rounds):
            with_pep.append(
                run_locust(
                    plan, target_url, target_creds, read_s, READ_CLASSES, f"read-pep-{i}", target
                )
            )
            if baseline is not None:
                without_pep.append(
                    run_locust(
                        plan,
                        baseline.url,
                        baseline.credentials,
                        read_s,
                        READ_CLASSES,
                        f"read-nopep-{i}",
                        baseline,
                    )
                )
        rss_after = target.rss_mb() if target is not None else None
        ok = True
    finally:
        for s in servers:
            s.stop()
        if not ok:
            print(f"load: failed; server logs and Locust output kept in {work}", file=sys.stderr)

    rps_with = statistics.median(s.rps for s in with_pep)
    rps_without = statistics.median(s.rps for s in without_pep) if without_pep else None
    ratio = round(rps_with / rps_without, 3) if rps_without else None
    honoured = _no_pep_honoured()
    params: dict[str, Any] = {
        "quick": quick,
        "server": args.url or "pdx run (fresh PDX_HOME, embedded SQLite)",
        "server_workers": args.server_workers,
        "locust_processes": args.locust_processes,
        "users": plan.users,
        "spawn_rate": plan.spawn_rate,
        "mix_duration_s": duration,
        "mix_classes": list(MIX_CLASSES),
        "read_classes": list(READ_CLASSES),
        "read_rounds": rounds,
        "read_round_s": read_s,
        "token_ttl_s": args.token_ttl,
        "seed_datasets": args.seed_datasets,
        "machine_load_avg_before": load_before,
        "machine_load_avg_after": _machine_load(),
        "mix": {k: v for k, v in asdict(mix).items() if k not in ("endpoints", "failure_table")},
        "mix_failure_table": mix.failure_table,
        "mix_server_cpu_ms_per_request": round(mix.server_cpu_ms_per_request, 2),
        "mix_endpoints": mix.endpoints,
        "read_rps_with_pep": [round(s.rps, 1) for s in with_pep],
        "read_rps_without_pep": [round(s.rps, 1) for s in without_pep],
        "read_p99_ms_with_pep": [s.p99_ms for s in with_pep],
        "read_server_cpu_ms_per_request_with_pep": [
            round(s.server_cpu_ms_per_request, 2) for s in with_pep
        ],
        "read_server_cpu_ms_per_request_without_pep": [
            round(s.server_cpu_ms_per_request, 2) for s in without_pep
        ],
        # Server + workers, after the warm-up and after every round: a leak shows here.
        "server_rss_mb_before_mix": rss_before,
        "server_rss_mb_after_all_rounds": rss_after,
        "no_pep_env": f"{NO_PEP_ENV}=1 (only with PDX_ENV=development)",
        "no_pep_honoured_by_gateway": honoured,
    }
    if not honoured:
        params["note"] = (
            f"the gateway does not read {NO_PEP_ENV} yet: both servers are identical and "
            "the ratio measures noise around 1.0"
        )
    if ratio is None:
        params["note"] = "--url run: no second server, no ratio"
    return _mix_metrics(mix, ratio), params


def _default_credentials() -> Path:
    return Path(os.environ.get("PDX_HOME") or ".pdx") / "demo-credentials.json"


def _mix_metrics(mix: Stats, ratio: float | None) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from bench.report import Metric

    return {
        "rps": Metric(round(mix.rps, 1), "req/s", f">= {TARGET_RPS:g}", mix.rps >= TARGET_RPS),
        "p50_ms": Metric(mix.p50_ms, "ms"),
        "p99_ms": Metric(mix.p99_ms, "ms", f"< {TARGET_P99_MS:g}", mix.p99_ms < TARGET_P99_MS),
        "failures": Metric(mix.failures, "requests", "0", mix.failures == 0),
        # null value without a second server (--url): nothing was compared
        "zero_trust_overhead_ratio": Metric(ratio, "x"),  # type: ignore[arg-type]
    }


def _write(metrics: dict[str, Any], params: dict[str, Any], *, dry: bool) -> None:
    sys.path.insert(0, str(REPO))
    from bench.report import write

    if dry:
        for name, m in metrics.items():
            print(f"load.{name} = {m.value} {m.unit} (not written)")
        return
    path = write("load", params, metrics)
    print(f"load: wrote {path}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LoadError as exc:
        print(f"load: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
