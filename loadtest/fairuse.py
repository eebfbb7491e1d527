"""Fair-use scenarios of the load test: a computation flood and a credential flood (issue 11).

Both run against their own server (fresh `PDX_HOME`, started by `loadtest.run`) so
they neither disturb nor are disturbed by the mix:

* **Fair share.** provider-transport registers a small `general-1`/`open` dataset (no
  PI: a computation needs only a purpose, no contract and no privacy budget, so nothing
  refuses the flood before the scheduler sees it). A second enterprise, the attacker,
  is created. `FairShareVictim` (enterprise-fintech, one user) asks for `stats.count`
  again and again and records request → released result as a `JOB` sample: first alone
  (unloaded), then while `FairShareFlooder` users post the same request as fast as the
  server answers them (201 or 429 at its quota). `fair_share_victim_p95_ratio` = p95
  under the flood / p95 unloaded (target ≤ 2).
* **Credential flood.** `CredentialFlooder` users post wrong client secrets to
  `/v1/auth/token` from 127.0.0.1 (half for the legitimate client's id, half for
  unknown ids), while a legitimate client logs in with its right secret from 127.0.0.2,
  paced, and measures each token request: `token_p99_ms_under_credential_flood`
  (target < 500). It is measured the same way whether or not the server rate-limits
  the endpoint; a legitimate request that is refused counts as a failure in `params`
  and fails the target.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PURPOSE = "load test: fair use of computations"
VICTIM = "enterprise-fintech"
PROBE_ADDRESS = "127.0.0.2"
FLOOD_ADDRESS = "127.0.0.1"
TARGET_FAIR_RATIO = 2.0
TARGET_TOKEN_P99_MS = 500.0
JOB_NAME = "stats.count request→released"


class ScenarioError(Exception):
    """A fair-use scenario could not be set up or run; the message says which step."""


# -- setup ---------------------------------------------------------------------------------------


def open_csv(rows: int) -> bytes:
    """Ridership counts per station: no personal information, so it grades general-1."""
    lines = ["station,riders,minutes"]
    lines += [f"S{i % 7},{10 + i % 13},{5 + i % 11}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def open_metadata(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": "load-test ridership counts (open data)",
        "classification_path": ["transport", "public transit", "ridership"],
        "level": "general-1",
        "impact_object": "public-interest",
        "impact_degree": "general",
        "source_agency": "Municipal Transport Bureau",
        "accountable_department": "Transit Data Office",
        "pi": False,
        "sensitive_pi": False,
        "share_attribute": "conditional",
        "open_attribute": "open",
    }


def _token(client: Any, creds: dict[str, Any]) -> dict[str, str]:
    r = client.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
        },
    )
    if r.status_code != 200:
        who = creds["client_id"]
        raise ScenarioError(f"login of {who} refused: {r.status_code} {r.text[:200]}")
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def prepare(url: str, credentials: Path, out: Path, *, rows: int = 200) -> dict[str, Any]:
    """Register the open dataset and the attacker tenant; write the locust setup file."""
    import httpx
    from pdx_client import Enterprise, PdxError, Provider

    from gateway.demo_compute import ComputeDemoError, admit

    creds = json.loads(credentials.read_text(encoding="utf-8"))

    def login(cls: type[Any], name: str) -> Any:
        return cls.login(url, creds[name]["client_id"], creds[name]["client_secret"], timeout=60)

    try:
        with login(Provider, "provider-transport") as provider:
            meta = open_metadata(f"loadtest-open-{time.time_ns()}")
            dataset_id = provider.register(meta, open_csv(rows)).id
        with httpx.Client(base_url=url, timeout=60) as client:
            # The operator only invites the tenant's first administrator, who issues its client.
            admin = _token(client, creds["operator-admin"])
            name = f"Flood Analytics {time.time_ns()}"
            attacker = admit(client, admin, name, "enterprise")
        org_id = attacker["org"]
        # The victim's request must be allowed as it stands (open data: purpose only).
        with login(Enterprise, VICTIM) as victim:
            victim.request("stats.count", [dataset_id], {}, PURPOSE)
    except (PdxError, ComputeDemoError) as exc:
        raise ScenarioError(f"fair-use setup refused: {exc}") from None
    setup = {
        "dataset_id": dataset_id,
        "purpose": PURPOSE,
        "victim": VICTIM,
        "attacker": {
            "client_id": attacker["client_id"],
            "client_secret": attacker["client_secret"],
            "org_id": org_id,
        },
        "rows": rows,
    }
    out.write_text(json.dumps(setup), encoding="utf-8")
    return setup


# -- reading Locust's figures ------------------------------------------------------------------


def job_percentiles(stats_csv: Path) -> dict[str, float]:
    """The victim's request → released samples (`JOB` rows) from a Locust `_stats.csv`."""
    for row in csv.DictReader(stats_csv.open(encoding="utf-8")):
        if row["Type"] == "JOB" and row["Name"] == JOB_NAME:
            return {
                "count": float(row["Request Count"]),
                "failures": float(row["Failure Count"]),
                "p50_ms": float(row["50%"]),
                "p95_ms": float(row["95%"]),
                "p99_ms": float(row["99%"]),
            }
    raise ScenarioError(f"no {JOB_NAME} samples in {stats_csv}")


def endpoint_counts(stats_csv: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for row in csv.DictReader(stats_csv.open(encoding="utf-8")):
        if row["Name"] == "Aggregated":
            continue
        out[f"{row['Type']} {row['Name']}"] = {
            "requests": float(row["Request Count"]),
            "failures": float(row["Failure Count"]),
            "p50_ms": float(row["50%"] or 0),
            "p99_ms": float(row["99%"] or 0),
        }
    return out


# -- the legitimate token client ------------------------------------------------------------------


@dataclass
class TokenProbe:
    """Logs in with the right secret from `PROBE_ADDRESS`, paced, timing each request."""

    url: str
    client_id: str
    client_secret: str
    pace_s: float = 1.0  # within its own token rate (PDX_TOKEN_RATE_PER_MIN 120, burst 30)
    timeout_s: float = 30.0
    latencies_ms: list[float] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="token-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 5)

    def _run(self) -> None:
        import httpx

        transport = httpx.HTTPTransport(local_address=PROBE_ADDRESS)
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        with httpx.Client(base_url=self.url, transport=transport, timeout=self.timeout_s) as c:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    status = str(c.post("/v1/auth/token", data=form).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = (time.perf_counter() - started) * 1000
                self.latencies_ms.append(elapsed)  # refusals and timeouts count too
                if status != "200":
                    self.refused[status] = self.refused.get(status, 0) + 1
                self._stop.wait(max(0.0, self.pace_s - elapsed / 1000))

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "requests": len(lat),
            "refused": dict(self.refused),
            "p50_ms": round(statistics.median(lat), 1) if lat else None,
            "p99_ms": round(percentile(lat, 99), 1) if lat else None,
            "max_ms": round(lat[-1], 1) if lat else None,
            "source_address": PROBE_ADDRESS,
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


# -- the scenarios ---------------------------------------------------------------------------------


@dataclass
class FairUseResult:
    metrics: dict[str, Any]
    params: dict[str, Any]


def run_scenarios(
    plan: Any, server: Any, *, phase_s: int, flooders: int, cred_flooders: int
) -> FairUseResult:
    """Both scenarios against `server` (a started, healthy `loadtest.run.Server`)."""
    from bench.report import Metric
    from loadtest.run import LocustPlan, run_locust

    setup_file = plan.work / "fairshare.json"
    setup = prepare(server.url, server.credentials, setup_file)
    env = {"PDX_LOADTEST_FAIRSHARE": str(setup_file)}

    # 1. The victim alone, then with the flood.
    solo = LocustPlan(users=1, spawn_rate=1, processes=1, work=plan.work)
    run_locust(
        solo,
        server.url,
        server.credentials,
        phase_s,
        ("FairShareVictim",),
        "fair-unloaded",
        server,
        extra_env=env,
    )
    unloaded = job_percentiles(plan.work / "fair-unloaded_stats.csv")
    flood_plan = LocustPlan(
        users=1 + flooders, spawn_rate=1 + flooders, processes=1, work=plan.work
    )
    run_locust(
        flood_plan,
        server.url,
        server.credentials,
        phase_s,
        ("FairShareVictim", "FairShareFlooder"),
        "fair-flood",
        server,
        extra_env=env,
    )
    flooded = job_percentiles(plan.work / "fair-flood_stats.csv")
    ratio = round(flooded["p95_ms"] / unloaded["p95_ms"], 3) if unloaded["p95_ms"] else None

    # 2. The legitimate token client, quiet and then under the credential flood.
    creds = json.loads(server.credentials.read_text(encoding="utf-8"))[VICTIM]
    quiet = TokenProbe(server.url, creds["client_id"], creds["client_secret"])
    quiet.start()
    time.sleep(min(10, phase_s))
    quiet.stop()
    probe = TokenProbe(server.url, creds["client_id"], creds["client_secret"])
    cred_plan = LocustPlan(
        users=cred_flooders, spawn_rate=cred_flooders, processes=1, work=plan.work
    )
    timer = threading.Timer(3.0, probe.start)  # once Locust has started its users
    timer.start()
    try:
        run_locust(
            cred_plan,
            server.url,
            server.credentials,
            phase_s,
            ("CredentialFlooder",),
            "credential-flood",
            server,
            extra_env=env,
        )
    finally:
        timer.cancel()
        probe.stop()
    token = probe.summary()
    p99 = token["p99_ms"]
    token_ok = p99 is not None and p99 < TARGET_TOKEN_P99_MS and not token["refused"]

    metrics = {
        "fair_share_victim_p95_ratio": Metric(
            ratio,  # type: ignore[arg-type]
            "x",
            f"<= {TARGET_FAIR_RATIO:g}",
            ratio is not None and ratio <= TARGET_FAIR_RATIO,
        ),
        "token_p99_ms_under_credential_flood": Metric(
            p99,  # null when no token request completed
            "ms",
            f"< {TARGET_TOKEN_P99_MS:g}",
            token_ok,
        ),
    }
    params = {
        "fair_use_server": "one gateway process (pdx run), default fair-use settings",
        "fair_share_phase_s": phase_s,
        "fair_share_flooders": flooders,
        "fair_share_dataset_rows": setup["rows"],
        "fair_share_victim_unloaded": unloaded,
        "fair_share_victim_under_flood": flooded,
        "fair_share_flood_endpoints": endpoint_counts(plan.work / "fair-flood_stats.csv"),
        "credential_flooders": cred_flooders,
        "credential_flood_source_address": FLOOD_ADDRESS,
        "credential_flood_endpoints": endpoint_counts(plan.work / "credential-flood_stats.csv"),
        "token_probe_quiet": quiet.summary(),
        "token_probe_under_credential_flood": token,
    }
    return FairUseResult(metrics, params)
