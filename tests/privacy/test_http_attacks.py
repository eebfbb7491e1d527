"""The privacy attacks of issue 14, each once through the real HTTP API and the shipped policy.

Each test plays a curious requester (or a reader of the public ledger) against the running
app: differencing two overlapping queries, the cohort oracle, budget refusals as an
oracle, a budget reset by re-registering the rows, bounds chosen by the requester,
an approval reused for another query, and a brute force of small ledger commitments.
The statistics of the mechanisms are tested in-process (test_release_dp.py); here each
attack must fail on the path a client really takes.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest
from fastapi.testclient import TestClient

from exchange.budgets import BudgetLimits
from exchange.commitments import canonical, verify
from exchange.models import Computation
from gateway.platform import Platform
from ledger.records import decode_leaf
from tests.helpers.api import assert_problem
from tests.helpers.i14_privacy import PURPOSE, HeldRunner, Parties, column, readings, rows_csv
from tests.test_api_contracts import active_contract, make_org

CLIP = [0.0, 250.0]


@pytest.fixture
def parties(capi: TestClient, creds: dict[str, Any]) -> Parties:
    return Parties(capi, creds)


def _sum(result: dict[str, Any]) -> float:
    return float(result["output"]["groups"][0]["values"]["sum(systolic_bp)"])


def test_differencing_two_overlapping_queries_yields_noise_not_the_record(
    parties: Parties,
) -> None:
    """sum over {A, B} minus sum over {A} was B's one record exactly (general-3, no DP)."""
    big = rows_csv(readings(1, 80))  # noisy cohort (k = 3 measures, ε = 0.6) well above 10
    lone = rows_csv(readings(2, 1))
    a = parties.dataset("Northgate", "ward A", big, "general-3")
    b = parties.dataset("Lakeside", "ward B", lone, "general-3")
    released = []
    for inputs in ([a, b], [a]):
        r = parties.ask("stats.sum", inputs, {"columns": ["systolic_bp"], "clip": CLIP})
        assert r.status_code == 201, r.text
        done = parties.wait(r.json()["id"])
        assert done["state"] == "released", done["error"]
        released.append(parties.result(done["id"]))
    target = column(lone, "systolic_bp")[0]
    exact_a = sum(column(big, "systolic_bp"))
    both, only_a = (_sum(x) for x in released)
    # Noise on each release: the difference is not the lone record, nor is A's sum exact.
    assert abs((both - only_a) - target) > 1e-6
    assert abs(only_a - exact_a) > 1e-6
    assert all(x["epsilon_spent"] == pytest.approx(0.6) for x in released)
    assert released[1]["output"]["groups"][0]["exact"] == {}


def test_a_refused_cohort_still_costs_its_budget(parties: Parties) -> None:
    """The cohort check was a free oracle on exact counts; now it is charged like a run."""
    ds = parties.dataset("Northgate", "three rows", rows_csv(readings(3, 3)), "general-3")
    r = parties.ask("stats.count", [ds], {})
    assert r.status_code == 201, r.text
    parties.wait(r.json()["id"])
    budget = parties.api.get(f"/v1/datasets/{ds}/privacy-budget", headers=parties.ent)
    assert budget.status_code == 200, budget.text
    view = budget.json()
    assert [i["epsilon_spent"] for i in view["requesters"]["items"]] == [pytest.approx(0.6)]
    assert view["lineage"] is None and view["epsilon_spent"] is None  # the requester's view


def _strip_ids(problem: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem.items() if k not in ("instance", "request_id", "trace_id")}


def test_budget_refusals_are_identical_for_n_and_n_plus_1_rows(
    parties: Parties, platform: Platform
) -> None:
    """After the budget is spent, a request is refused before it runs, whatever the data."""
    platform.compute.budget_limits = BudgetLimits(lineage_epsilon=0.6, requester_epsilon=0.6)
    platform.compute.runner = HeldRunner()  # charged at acceptance: nothing needs to run
    refusals = []
    for n in (12, 13):
        ds = parties.dataset("Northgate", f"rows {n}", rows_csv(readings(10 + n, n)), "general-3")
        first = parties.ask("stats.count", [ds], {})
        assert first.status_code == 201, first.text
        # Bins as many as rows: a row-level shape the old gate told apart from exhaustion.
        r = parties.ask("stats.histogram", [ds], {"columns": ["age"], "bins": n, "range": [0, 100]})
        refusals.append((r.status_code, _strip_ids(assert_problem(r, 409))))
    assert refusals[0] == refusals[1]
    assert refusals[0][1]["type"].endswith("/privacy-budget-exceeded")


def test_re_registering_the_rows_does_not_reset_the_budget(
    parties: Parties, platform: Platform
) -> None:
    platform.compute.budget_limits = BudgetLimits(lineage_epsilon=3.0, requester_epsilon=1.2)
    platform.compute.runner = HeldRunner()
    rows = readings(4, 30)
    first = parties.dataset("Northgate", "readings", rows_csv(rows), "general-3")
    for _ in range(2):
        r = parties.ask("stats.count", [first], {})
        assert r.status_code == 201, r.text
    assert_problem(parties.ask("stats.count", [first], {}), 409, "privacy-budget-exceeded")
    # The same rows again, shuffled, under a new name, and by another provider too.
    shuffled = list(rows)
    random.Random(5).shuffle(shuffled)
    again = parties.dataset("Northgate", "readings (copy)", rows_csv(shuffled), "general-3")
    elsewhere = parties.dataset("Lakeside", "readings", rows_csv(shuffled), "general-3")
    for ds in (again, elsewhere):
        assert_problem(parties.ask("stats.count", [ds], {}), 409, "privacy-budget-exceeded")
    _, prov = parties.provider("Northgate")
    views = [
        parties.api.get(f"/v1/datasets/{d}/privacy-budget", headers=prov).json()
        for d in (first, again)
    ]
    assert views[0]["lineage"] == views[1]["lineage"] is not None
    assert views[1]["epsilon_spent"] == pytest.approx(1.2)
    mine = parties.api.get(f"/v1/datasets/{again}/privacy-budget", headers=parties.ent).json()
    assert mine["epsilon_remaining"] == pytest.approx(0.0, abs=1e-9)


def test_bounds_and_groups_are_the_providers_not_the_requesters(
    parties: Parties, platform: Platform
) -> None:
    """clip/range inside the rules are replaced by them, outside them refused."""
    platform.compute.runner = HeldRunner()  # what is stored is the point, not the runs
    ds = parties.dataset("Northgate", "ruled", rows_csv(readings(6, 40)), "general-3")
    org, prov = parties.provider("Northgate")
    rules = {
        "operators": ["stats.sum", "stats.mean", "stats.histogram", "stats.count"],
        "columns": {
            "systolic_bp": {"bounds": [60.0, 200.0], "bins": 7},
            "ward": {"group_by": True, "groups": ["A", "B"]},
        },
        "min_cohort": 15,
        "epsilon_per_query": 0.4,
    }
    r = parties.api.put(f"/v1/datasets/{ds}/analysis-rules", headers=prov, json=rules)
    assert r.status_code == 200, r.text
    # Only the provider sets them.
    assert_problem(
        parties.api.put(f"/v1/datasets/{ds}/analysis-rules", headers=parties.ent, json={}), 403
    )
    col = {"columns": ["systolic_bp"]}
    # Outside the rules: refused before anything is written.
    for operator, params in (
        ("stats.sum", {**col, "clip": [0.0, 180.0]}),
        ("stats.histogram", {**col, "range": [50.0, 180.0], "bins": 7}),
        ("stats.histogram", {**col, "range": [80.0, 180.0], "bins": 8}),
        ("stats.mean", {**col, "group_by": "ward", "groups": ["A", "C"]}),
        ("stats.mean", {**col, "group_by": "age", "groups": ["30", "40"]}),
        ("stats.variance", {**col, "clip": [60.0, 200.0]}),
        ("stats.sum", {"columns": ["patient_ref"], "clip": [0.0, 1.0]}),
    ):
        problem = assert_problem(parties.ask(operator, [ds], params), 422)
        assert problem["type"].endswith("/analysis-rules-violation"), (operator, params, problem)
    # Inside or absent: the rules' values are what is stored, approved and run.
    stored = []
    for params in ({**col}, {**col, "clip": [80.0, 180.0]}):
        r = parties.ask("stats.sum", [ds], params)
        assert r.status_code == 201, r.text
        stored.append(r.json())
    assert [c["params"]["clip"] for c in stored] == [[60.0, 200.0], [60.0, 200.0]]
    assert stored[0]["obligations"]["min_cohort"] == 15
    assert stored[0]["obligations"]["dp_epsilon"] == pytest.approx(0.4)
    # Two histograms whose ranges differ by 0.1 (pinning a record) become the same query.
    for lo in (80.0, 80.1):
        hist = parties.ask("stats.histogram", [ds], {**col, "range": [lo, 180.0], "bins": 7})
        assert hist.status_code == 201, hist.text
        assert hist.json()["params"]["range"] == [60.0, 200.0]
    grouped = parties.ask("stats.count", [ds], {"group_by": "ward", "groups": ["B"]})
    assert grouped.status_code == 201, grouped.text
    shown = parties.api.get(f"/v1/datasets/{ds}/analysis-rules", headers=parties.ent).json()
    assert shown["version"] == 1 and shown["rules"]["min_cohort"] == 15


def test_feature_bounds_of_federated_learning_come_from_the_rules(
    parties: Parties, platform: Platform
) -> None:
    platform.compute.runner = HeldRunner()
    text = [rows_csv(readings(20 + i, 30)) for i in range(2)]
    inputs = [parties.dataset(p, "fl", t, "general-3") for p, t in zip("NL", text, strict=True)]
    for p, ds, lo in (("N", inputs[0], 60.0), ("L", inputs[1], 70.0)):
        _, prov = parties.provider(p)
        rules = {"columns": {"systolic_bp": {"bounds": [lo, 200.0]}, "age": {"bounds": [0, 120]},
                             "readmitted": {}}}  # fmt: skip
        r = parties.api.put(f"/v1/datasets/{ds}/analysis-rules", headers=prov, json=rules)
        assert r.status_code == 200, r.text
    params = {"features": ["systolic_bp", "age"], "label": "readmitted", "rounds": 1}
    r = parties.ask("fl.logreg", inputs, params)
    assert r.status_code == 201, r.text
    assert r.json()["params"]["feature_bounds"] == [[60.0, 200.0], [0.0, 120.0]]
    wide = {**params, "feature_bounds": [[0.0, 300.0], [0.0, 120.0]]}
    assert_problem(parties.ask("fl.logreg", inputs, wide), 422, "analysis-rules-violation")


def test_an_approval_of_one_query_does_not_approve_another(
    parties: Parties, platform: Platform
) -> None:
    platform.compute.runner = held = HeldRunner()
    ds = parties.dataset("Northgate", "general-4 rows", rows_csv(readings(7, 40)), "general-4")
    _, prov = parties.provider("Northgate")
    first = parties.ask("stats.count", [ds], {}).json()
    other = parties.ask("stats.sum", [ds], {"columns": ["systolic_bp"], "clip": CLIP}).json()
    q = parties.api.get(f"/v1/computations/{first['id']}/query", headers=prov)
    assert q.status_code == 200, q.text
    approved = q.json()["query_digest"]
    # The approval of the count, presented for the sum: refused, and nothing moves.
    r = parties.api.post(
        f"/v1/computations/{other['id']}/approve", headers=prov, json={"query_digest": approved}
    )
    assert_problem(r, 409, "approval-query-mismatch")
    assert parties.wait(other["id"], "awaiting_approval")["state"] == "awaiting_approval"
    r = parties.api.post(
        f"/v1/computations/{first['id']}/approve", headers=prov, json={"query_digest": approved}
    )
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    # The query changes between the approval and the run: the run is refused.
    with platform.session() as s, s.begin():
        comp = s.get(Computation, first["id"])
        assert comp is not None
        comp.params = {**comp.params, "columns": ["systolic_bp"]}
    assert held.release() == 1
    done = parties.wait(first["id"])
    assert done["state"] == "failed" and done["error"]["code"] == "approval-query-mismatch"
    assert platform.compute.sandbox_runs == 0


def _ledger(platform: Platform, comp_id: str) -> dict[str, str]:
    with platform.session() as s:
        entries = platform.ledger.entries(s, object_id=comp_id)
    return {
        decode_leaf(e.leaf)["type"]: decode_leaf(e.leaf)["payload_digest"]
        for e in entries
        if decode_leaf(e.leaf)["payload_digest"]
    }


def test_small_parameters_and_results_are_not_brute_forced_off_the_ledger(
    parties: Parties, platform: Platform
) -> None:
    ds = parties.dataset("Northgate", "committed", rows_csv(readings(8, 80)), "general-3")
    secret_clip = [0.0, 217.0]
    r = parties.ask("stats.sum", [ds], {"columns": ["systolic_bp"], "clip": secret_clip})
    assert r.status_code == 201, r.text
    comp = r.json()
    done = parties.wait(comp["id"])
    assert done["state"] == "released", done["error"]
    entries = _ledger(platform, comp["id"])
    # An outsider who knows the dataset and the operator tries every small clip.
    guesses = set()
    for hi in range(100, 301):
        doc = {**comp["params"], "clip": [0.0, float(hi)]}
        body = {"operator": "stats.sum", "params": doc, "inputs": [ds]}
        for text in (json.dumps(body, sort_keys=True), canonical(body).decode()):
            guesses.add("sha256:" + hashlib.sha256(text.encode()).hexdigest())
    assert entries["computation.requested"] not in guesses
    assert entries["computation.requested"].startswith("hmac-sha256:")
    # The requester opens its own entries and checks them.
    q = parties.api.get(f"/v1/computations/{comp['id']}/query", headers=parties.ent).json()
    openings = {o["kind"]: o for o in q["openings"]}
    query_doc = {"operator": "stats.sum", "params": comp["params"], "inputs": [ds]}
    assert openings["query"]["commitment"] == entries["computation.requested"]
    assert verify(openings["query"]["commitment"], openings["query"]["key"], "query",
                  canonical(query_doc))  # fmt: skip
    output = parties.result(comp["id"])["output"]
    assert openings["result"]["commitment"] == entries["computation.released"]
    assert verify(openings["result"]["commitment"], openings["result"]["key"], "result",
                  canonical(output))  # fmt: skip
    assert not verify(openings["result"]["commitment"], openings["result"]["key"], "result",
                      canonical({**output, "dp_epsilon": 9.0}))  # fmt: skip


def test_a_derived_dataset_shares_its_sources_budget(parties: Parties, platform: Platform) -> None:
    platform.compute.budget_limits = BudgetLimits(lineage_epsilon=3.0, requester_epsilon=1.2)
    platform.compute.runner = HeldRunner()
    source = parties.dataset("Northgate", "source", rows_csv(readings(30, 40)), "general-3")
    # A derivation (here: a subset of the rows) is not the same row set...
    derived = parties.dataset("Northgate", "derived", rows_csv(readings(30, 40)[:35]), "general-3")
    _, prov = parties.provider("Northgate")
    r = parties.api.put(
        f"/v1/datasets/{derived}/analysis-rules", headers=prov, json={"derived_from": source}
    )
    assert r.status_code == 200, r.text
    # ...but its provider declared the source: they share one budget.
    assert parties.ask("stats.count", [source], {}).status_code == 201
    assert parties.ask("stats.count", [derived], {}).status_code == 201
    for ds in (source, derived):
        assert_problem(parties.ask("stats.count", [ds], {}), 409, "privacy-budget-exceeded")
    # Another provider cannot hang its dataset on this lineage (and spend its budget).
    elsewhere = parties.dataset("Lakeside", "other", rows_csv(readings(32, 40)), "general-3")
    _, lakeside = parties.provider("Lakeside")
    r = parties.api.put(
        f"/v1/datasets/{elsewhere}/analysis-rules", headers=lakeside, json={"derived_from": source}
    )
    assert_problem(r, 422, "analysis-rules-violation")
    # Once charged, a lineage is fixed: the declaration cannot be withdrawn to escape it.
    r = parties.api.put(f"/v1/datasets/{derived}/analysis-rules", headers=prov, json={})
    assert_problem(r, 422, "analysis-rules-violation")


def test_one_requester_cannot_spend_everyones_budget(
    parties: Parties, platform: Platform, creds: dict[str, Any]
) -> None:
    platform.compute.budget_limits = BudgetLimits(lineage_epsilon=1.8, requester_epsilon=1.2)
    platform.compute.runner = HeldRunner()
    ds = parties.dataset("Northgate", "shared", rows_csv(readings(31, 40)), "general-3")
    org, prov = parties.provider("Northgate")
    for _ in range(2):
        assert parties.ask("stats.count", [ds], {}).status_code == 201
    assert_problem(parties.ask("stats.count", [ds], {}), 409, "privacy-budget-exceeded")
    # Another requester still has its share of what is left of the lineage's budget.
    other_org, other = make_org(parties.api, creds, "Second Analytics", "enterprise")
    active_contract(parties.api, other, prov, org, [ds], PURPOSE)
    body = {"operator": "stats.count", "inputs": [ds], "params": {}, "purpose": PURPOSE}
    assert parties.api.post("/v1/computations", headers=other, json=body).status_code == 201
    assert_problem(
        parties.api.post("/v1/computations", headers=other, json=body),
        409,
        "privacy-budget-exceeded",
    )  # the lineage's 1.8 is spent
    view = parties.api.get(f"/v1/datasets/{ds}/privacy-budget", headers=prov).json()
    spent = {i["requester_org"]: i["epsilon_spent"] for i in view["requesters"]["items"]}
    assert spent == {parties.ent_org: pytest.approx(1.2), other_org: pytest.approx(0.6)}
    assert view["epsilon_remaining"] == pytest.approx(0.0, abs=1e-9)
    assert view["requesters"]["total"] == 2 and view["requesters"]["next"] is None
    mine = parties.api.get(f"/v1/datasets/{ds}/privacy-budget", headers=other).json()
    assert [i["requester_org"] for i in mine["requesters"]["items"]] == [other_org]
