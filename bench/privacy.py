"""`pdx bench privacy`: the issue-14 attacks against the shipped platform, and DP utility.

Metrics (docs/benchmarks.md, "privacy"):

- `attacks_total`, `attacks_succeeded` (target 0). Statistical attacks run in-process
  through the release gate (its OpenDP noise and post-processing) over many trials; an
  attack *succeeds* when its estimate lands within 1 % of the target more often than the
  noise distribution predicts, by more than a 99 % Clopper–Pearson margin. Path attacks
  run once each through the HTTP API of a real platform (SQLite, seeded, the shipped
  policy) and succeed when the platform does what it must refuse: averaging repeated
  queries past the budget, a budget reset by re-registering shuffled rows, requester-
  chosen bounds, an approval reused for another query, a brute force of the request's
  ledger commitment, an uncharged cohort refusal, and the budget-refusal oracle.
- `dp_mean_rel_error_1e4_eps1`: median over 100 trials of |DP mean − true mean| / (U − L)
  over 10,000 rows with provider bounds [L, U] = [60, 200] at ε = 1 (target ≤ 0.01).
- `dp_fl_accuracy_eps3` (target ≥ 0.90) and `plain_fl_accuracy`: `bench.fl`'s record-level
  DP FedAvg at (ε, δ) = (3, 1e-6) over 3 nodes, and the same federation without DP.
- `budget_oracle_leak_bits` (target 0): 0 when the refusals after the budget is spent are
  byte-identical (status, type, body apart from ids) for datasets of N and N+1 rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import statistics
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from bench import report

TRIALS = 2000
MEAN_ROWS, MEAN_TRIALS, MEAN_BOUNDS = 10_000, 100, (60.0, 200.0)
PURPOSE = "privacy benchmark"


# -- in-process: the release gate's noise -------------------------------------------------------


def _sum_release(
    values: list[float], clip: tuple[float, float], eps: float, op: str = "stats.sum"
) -> dict[str, Any]:
    """One DP `stats.sum`/`stats.mean` release of `values` as the platform gates it."""
    from sandbox.coordinator import Decrypted
    from sandbox.operators import ProviderInput
    from sandbox.release import InMemoryPrivacyBudget, ReleaseGate, ReleaseObligations
    from sandbox.stats import StatsQuery, candidate, finish

    query = StatsQuery(op, ("v",), clip=clip)
    unit = 10**query.decimals
    ints = [round(Fraction(min(max(v, clip[0]), clip[1])) * unit) for v in values]
    got = {"rows": len(values), "n:v": len(values), "sum:v": sum(ints)}
    agg = Decrypted("paillier-packed", {"fields": list(query.fields())},
                    [got[f] for f in query.fields()], 1)  # fmt: skip
    gate = ReleaseGate(InMemoryPrivacyBudget(default=(math.inf, 1.0)))
    ob = ReleaseObligations(min_cohort=1, dp_epsilon=eps)
    providers = [ProviderInput("p", "d", Path("/nonexistent"))]
    gated = gate.gate(candidate(query, agg, providers), ob, "bench")
    out: dict[str, Any] = finish(query, 0.0)(gated).as_dict()["groups"][0]
    return out


def _lower_bound(hits: int, trials: int, alpha: float = 0.01) -> float:
    """One-sided Clopper–Pearson lower bound of a binomial proportion."""
    from scipy.stats import beta  # type: ignore[import-untyped]

    return 0.0 if hits == 0 else float(beta.ppf(alpha, hits, trials - hits + 1))


def attack_differencing(trials: int) -> dict[str, Any]:
    """sum over {A, B} minus sum over {A} estimates B's one record (two overlapping queries)."""
    rng = random.Random(1)
    a = [round(rng.gauss(125, 15), 1) for _ in range(40)]
    target, clip, eps = 130.3, (0.0, 250.0), 0.6
    hits = 0
    from sandbox.errors import ReleaseRefused

    for _ in range(trials):
        try:
            both = _sum_release([*a, target], clip, eps)["values"]["sum(v)"]
            only = _sum_release(a, clip, eps)["values"]["sum(v)"]
        except ReleaseRefused:
            # The gate refuses on a noisy count that came out far too low (a tail event,
            # about 1 in 4,000 releases here): the attacker learns nothing that trial.
            continue
        hits += abs((both - only) - target) <= 0.01 * target
    # Each sum is noised at scale b = k·Δ/ε (k = 3 measures per partition, Δ = 250); the
    # difference of two Laplace(b) has P(|D| ≤ t) = 1 − e^{−t/b}(1 + t/(2b)).
    b = 3 * 250.0 / eps
    t = 0.01 * target
    predicted = 1 - math.exp(-t / b) * (1 + t / (2 * b))
    observed_low = _lower_bound(hits, trials)
    return {
        "trials": trials,
        "hits": hits,
        "predicted": predicted,
        "observed_lower_99": observed_low,
        "succeeded": observed_low > predicted,
    }


def dp_mean_rel_error() -> float:
    rng = random.Random(2)
    lo, hi = MEAN_BOUNDS
    values = [min(max(rng.gauss(120, 18), lo), hi) for _ in range(MEAN_ROWS)]
    true = sum(values) / len(values)
    errors = []
    for _ in range(MEAN_TRIALS):
        mean = _sum_release(values, MEAN_BOUNDS, 1.0, "stats.mean")["values"]["mean(v)"]
        errors.append(abs(mean - true) / (hi - lo))
    return float(statistics.median(errors))


# -- through HTTP: a real platform ----------------------------------------------------------------


class _NoRun:
    """A job runner that runs nothing: every path attack is decided at request time."""

    def submit(self, job: Callable[[], None], key: str = "") -> None:
        return None

    def stop(self) -> None:
        return None


def _csv(rows: list[tuple[int, float, int]]) -> str:
    return "ref,systolic_bp,age\n" + "".join(f"R{i:05d},{bp},{age}\n" for i, bp, age in rows)


def _rows(seed: int, n: int) -> list[tuple[int, float, int]]:
    rng = random.Random(seed)
    return [(i, round(rng.gauss(125, 15), 1), rng.randrange(20, 90)) for i in range(n)]


class _Http:
    def __init__(self, work: Path) -> None:
        from fastapi.testclient import TestClient

        from gateway.app import create_app
        from gateway.platform import build_platform, initialise
        from gateway.settings import Settings

        settings = Settings(home=work / "home", database_url=f"sqlite:///{work / 'pdx.db'}")
        self.platform = build_platform(settings)
        creds = initialise(self.platform)
        assert creds is not None
        from exchange.quotas import Quotas

        self.platform.compute.runner = _NoRun()
        # Nothing runs, so every accepted request stays queued: room for all of them.
        self.platform.compute.quotas = Quotas(queued=1000, running=1)
        self.client = TestClient(create_app(self.platform))
        self.prov = self._login(creds["provider-transport"])
        self.ent = self._login(creds["enterprise-fintech"])
        self.prov_org = creds["provider-transport"]["org_id"]
        self._names = 0

    def _login(self, c: dict[str, Any]) -> dict[str, str]:
        form = {"grant_type": "client_credentials", "client_id": c["client_id"]}
        r = self.client.post("/v1/auth/token", data={**form, "client_secret": c["client_secret"]})
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def dataset(self, text: str, level: str = "general-3") -> str:
        self._names += 1
        meta = {
            "name": f"bench readings {self._names}",
            "classification_path": ["health", "hospital care", "ward readings"],
            "level": level,
            "impact_object": "public-interest",
            "impact_degree": "general",
            "source_agency": "District hospital",
            "accountable_department": "Medical records office",
            "pi": False,
            "sensitive_pi": False,
            "share_attribute": "conditional",
            "open_attribute": "conditional",
        }
        files: dict[str, Any] = {"metadata": (None, json.dumps(meta), "application/json"),
                 "file": ("data.csv", text.encode(), "text/csv")}  # fmt: skip
        r = self.client.post("/v1/datasets", headers=self.prov, files=files)
        r.raise_for_status()
        ds = str(r.json()["id"])
        body = {"provider_org": self.prov_org, "datasets": [ds], "purpose": PURPOSE,
                "agreement_id": "DUA-BENCH"}  # fmt: skip
        r = self.client.post("/v1/contracts", headers=self.ent, json=body)
        r.raise_for_status()
        r = self.client.post(f"/v1/contracts/{r.json()['id']}/sign", headers=self.prov)
        r.raise_for_status()
        return ds

    def ask(self, operator: str, ds: str, params: dict[str, Any]) -> Any:
        body = {"operator": operator, "inputs": [ds], "params": params, "purpose": PURPOSE}
        return self.client.post("/v1/computations", headers=self.ent, json=body)

    def close(self) -> None:
        self.client.close()
        self.platform.engine.dispose()


def _strip(r: Any) -> tuple[int, dict[str, Any]]:
    body = {k: v for k, v in r.json().items() if k not in ("request_id", "instance")}
    return r.status_code, body


def http_attacks(h: _Http) -> tuple[dict[str, bool], int]:
    """Each path attack once; returns which succeeded, and the budget oracle's leak bits."""
    from exchange.budgets import BudgetLimits

    out: dict[str, bool] = {}
    limits = h.platform.compute.budget_limits
    eps = 0.6  # general-3
    # Averaging repeated queries: no more answers than the requester's budget allows.
    ds = h.dataset(_csv(_rows(1, 30)))
    accepted = sum(h.ask("stats.count", ds, {}).status_code == 201 for _ in range(10))
    out["averaging_repeated_queries"] = accepted > math.floor(limits.requester_epsilon / eps)
    # Budget reset by re-registering the same rows, shuffled, under a new name.
    rows = _rows(1, 30)
    random.Random(3).shuffle(rows)
    copy = h.dataset(_csv(rows))
    out["budget_reset_by_reregistration"] = h.ask("stats.count", copy, {}).status_code == 201
    # Requester-chosen bounds: outside the provider's rules, or inside but kept.
    ds = h.dataset(_csv(_rows(4, 40)))
    rules = {"columns": {"systolic_bp": {"bounds": [60.0, 200.0]}}}
    h.client.put(f"/v1/datasets/{ds}/analysis-rules", headers=h.prov, json=rules).raise_for_status()
    col = {"columns": ["systolic_bp"]}
    outside = h.ask("stats.sum", ds, {**col, "clip": [0.0, 180.0]})
    inside = h.ask("stats.sum", ds, {**col, "clip": [80.0, 180.0]})
    out["requester_chosen_bounds"] = outside.status_code == 201 or (
        inside.status_code == 201 and inside.json()["params"]["clip"] != [60.0, 200.0]
    )
    # Approval reuse: the provider's approval of one query presented for another.
    g4 = h.dataset(_csv(_rows(5, 40)), level="general-4")
    first = h.ask("stats.count", g4, {}).json()["id"]
    other = h.ask("stats.sum", g4, {**col, "clip": [0.0, 250.0]}).json()["id"]
    q = h.client.get(f"/v1/computations/{first}/query", headers=h.prov).json()
    reused = h.client.post(f"/v1/computations/{other}/approve", headers=h.prov,
                           json={"query_digest": q["query_digest"]})  # fmt: skip
    out["approval_reuse"] = reused.status_code == 200
    # Ledger brute force of a small parameter space (the request's clip).
    ds = h.dataset(_csv(_rows(7, 40)))
    comp = h.ask("stats.sum", ds, {**col, "clip": [60.0, 200.0]}).json()
    with h.platform.session() as s:
        from ledger.records import decode_leaf

        leaves = [decode_leaf(e.leaf) for e in h.platform.ledger.entries(s, object_id=comp["id"])]
    committed = next(x["payload_digest"] for x in leaves if x["type"] == "computation.requested")
    found = False
    for lo in range(0, 101):
        for hi in range(150, 251):
            doc = {"operator": "stats.sum", "params": {**comp["params"], "clip": [float(lo),
                   float(hi)]}, "inputs": [ds]}  # fmt: skip
            for text in (json.dumps(doc, sort_keys=True),
                         json.dumps(doc, sort_keys=True, separators=(",", ":"))):  # fmt: skip
                found |= "sha256:" + hashlib.sha256(text.encode()).hexdigest() == committed
    out["ledger_brute_force"] = found
    # The cohort refusal is charged like a run (it is decided after acceptance).
    tiny = h.dataset(_csv(_rows(6, 3)))
    h.ask("stats.count", tiny, {})
    view = h.client.get(f"/v1/datasets/{tiny}/privacy-budget", headers=h.ent).json()
    spent = sum(i["epsilon_spent"] for i in view.get("requesters", {}).get("items", []))
    out["uncharged_cohort_oracle"] = spent < eps - 1e-9
    # The budget-refusal oracle: datasets of N and N+1 rows, each budget spent, then asked.
    h.platform.compute.budget_limits = BudgetLimits(lineage_epsilon=eps, requester_epsilon=eps)
    refusals = []
    for n in (12, 13):
        d = h.dataset(_csv(_rows(10 + n, n)))
        h.ask("stats.count", d, {})
        r = h.ask("stats.histogram", d, {"columns": ["age"], "bins": n, "range": [0, 100]})
        refusals.append(_strip(r))
    h.platform.compute.budget_limits = limits
    leak_bits = 0 if refusals[0] == refusals[1] and refusals[0][0] != 201 else 1
    out["budget_refusal_oracle"] = leak_bits > 0
    return out, leak_bits


# -- the run ------------------------------------------------------------------------------------


def run(quick: bool = False) -> Path:
    from bench import fl

    trials = 300 if quick else TRIALS
    differencing = attack_differencing(trials)
    mean_err = dp_mean_rel_error()
    work = Path(tempfile.mkdtemp(prefix="pdx-bench-privacy-", dir=_workdir()))
    h = _Http(work)
    try:
        paths, leak_bits = http_attacks(h)
    finally:
        h.close()
        shutil.rmtree(work, ignore_errors=True)
    attacks = {"differencing_overlapping_queries": differencing["succeeded"], **paths}
    split = fl.breast_cancer_split()
    with tempfile.TemporaryDirectory(prefix="pdx-bench-privacy-fl-") as tmp:
        iid = fl.write_nodes(split, Path(tmp), skewed=False)
        dp_models = [fl.train_dp(split, iid) for _ in range(1 if quick else fl.DP_RUNS)]
        plain = fl.train(split, iid, encrypted=True, rounds=30 if quick else 200)
    x_te, y_te = split["x_test"], split["y_test"]
    dp_acc = statistics.median(m.accuracy(x_te, y_te) for m in dp_models)
    succeeded = sum(attacks.values())
    m = report.Metric
    return report.write(
        "privacy",
        {
            "quick": quick,
            "attacks": attacks,
            "differencing": differencing,
            "mean_rows": MEAN_ROWS,
            "mean_trials": MEAN_TRIALS,
            "mean_bounds": list(MEAN_BOUNDS),
            "fl_dp_runs": len(dp_models),
            "fl_dp": {"epsilon": fl.DP_EPSILON, "delta": fl.DP_DELTA, **fl.DP_CONFIG},
        },
        {
            "attacks_total": m(len(attacks), "count"),
            "attacks_succeeded": m(succeeded, "count", "0", succeeded == 0),
            "dp_mean_rel_error_1e4_eps1": m(mean_err, "fraction", "<= 0.01", mean_err <= 0.01),
            "dp_fl_accuracy_eps3": m(dp_acc, "fraction", ">= 0.90", dp_acc >= 0.90),
            "plain_fl_accuracy": m(plain.accuracy(x_te, y_te), "fraction"),
            "budget_oracle_leak_bits": m(leak_bits, "bits", "0", leak_bits == 0),
        },
    )


def _workdir() -> Path:
    report.WORK.mkdir(parents=True, exist_ok=True)
    return report.WORK
