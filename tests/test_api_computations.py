"""Computations through the API: policy, approvals, sandboxed runs, release gate, ledger."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

import crypto
import exchange
from exchange.jobs import DbPrivacyBudget
from exchange.models import Computation, PrivacyBudgetAccount
from gateway.demo_compute import run_compute_demo
from gateway.platform import Platform
from ledger.records import decode_leaf
from sandbox.isolation import Limits, Sandbox, SandboxSession
from sandbox.operators import REGISTRY
from tests.conftest import login
from tests.helpers.api import assert_problem
from tests.helpers.clocks import drain
from tests.test_api_contracts import (
    active_contract,
    make_org,
    measure_csv,
    register_dataset,
)

PURPOSE = "readmission risk research"


HOSPITALS = ("Northgate", "Lakeside", "Hillcrest")


def wait_for(
    api: TestClient, headers: dict[str, str], comp_id: str, *states: str, timeout: float = 180
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = api.get(f"/v1/computations/{comp_id}", headers=headers).json()
        if body["state"] in states:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def counting_sandbox(opened: list[str]) -> Callable[[], Sandbox]:
    """A sandbox factory that records every isolated worker it starts."""

    class Counting(Sandbox):
        def open_session(
            self, operator: str, inputs: Sequence[Path] = (), *, limits: Limits | None = None
        ) -> SandboxSession:
            opened.append(operator)
            return super().open_session(operator, inputs, limits=limits)

    return lambda: Counting(REGISTRY)


def values(text: str, column: str) -> list[Fraction]:
    return [Fraction(row[column]) for row in csv.DictReader(io.StringIO(text))]


def setup_network(
    api: TestClient,
    creds: dict[str, Any],
    level: str,
    *,
    rows: tuple[int, ...] = (60, 45, 75),
    open_attribute: str = "conditional",
) -> dict[str, Any]:
    """Three district hospitals with a measure dataset each; an enterprise with contracts."""
    ent_org, ent = make_org(api, creds, "Riverside Health Analytics", "enterprise")
    hospitals = []
    for i, (name, n) in enumerate(zip(HOSPITALS, rows, strict=True)):
        org, headers = make_org(api, creds, f"{name} District Hospital", "provider")
        text = measure_csv(i, n)
        ds = register_dataset(
            api, headers, text, f"{name} ward readings", level, open_attribute=open_attribute
        )
        contract = active_contract(api, ent, headers, org, [ds["id"]], PURPOSE)
        hospitals.append(
            {"org": org, "h": headers, "ds": ds, "text": text, "contract": contract["id"]}
        )
    return {"ent_org": ent_org, "ent": ent, "hospitals": hospitals}


def ask(api: TestClient, net: dict[str, Any], operator: str, params: dict[str, Any]) -> Any:
    body = {
        "operator": operator,
        "inputs": [h["ds"]["id"] for h in net["hospitals"]],
        "params": params,
        "purpose": PURPOSE,
    }
    return api.post("/v1/computations", headers=net["ent"], json=body)


def ledger_types(platform: Platform, comp_id: str) -> list[tuple[int, str]]:
    with platform.session() as s:
        entries = platform.ledger.entries(s, object_id=comp_id)
    return [(e.index, decode_leaf(e.leaf)["type"]) for e in entries]


def test_operators_are_listed_with_parameter_schemas(
    capi: TestClient, creds: dict[str, Any]
) -> None:
    r = capi.get("/v1/operators", headers=login(capi, creds, "enterprise-fintech"))
    assert r.status_code == 200, r.text
    ops = {o["name"]: o for o in r.json()["items"]}
    assert set(ops) == {
        "stats.count",
        "stats.sum",
        "stats.mean",
        "stats.variance",
        "stats.histogram",
        "fl.logreg",
        "psi.cardinality",
        "psi.sum",
        "psi.intersection",
        "fl.hetero_logreg",
    }
    assert "columns" in ops["stats.mean"]["parameters"]["properties"]
    assert ops["fl.logreg"]["parameters"]["required"] == ["features"]
    assert ops["fl.logreg"]["min_providers"] == 2


def test_denied_request_runs_nothing(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    ent_org, ent = make_org(capi, creds, "Riverside Health Analytics", "enterprise")
    org, prov = make_org(capi, creds, "Northgate District Hospital", "provider")
    ds = register_dataset(capi, prov, measure_csv(0, 30), "ward readings", "general-2")
    body = {
        "operator": "stats.mean",
        "inputs": [ds["id"]],
        "params": {"columns": ["systolic_bp"]},
        "purpose": PURPOSE,
    }
    r = capi.post("/v1/computations", headers=ent, json=body)
    problem = assert_problem(r, 403, "forbidden")
    assert any("requires a contract" in reason for reason in problem["reasons"])
    # With a contract for another purpose: still denied, and the policy says why.
    active_contract(capi, ent, prov, org, [ds["id"]], "marketing")
    problem = assert_problem(capi.post("/v1/computations", headers=ent, json=body), 403)
    assert any("does not match the contract's purpose" in x for x in problem["reasons"])
    assert platform.compute.sandbox_runs == 0
    with platform.session() as s:
        assert s.scalar(select(func.count()).select_from(Computation)) == 0


def test_mean_across_three_hospitals_is_released_to_the_requester_only(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    # Open general-1 data: its rows are public, so the exact mean is released (no DP).
    net = setup_network(capi, creds, "general-1", open_attribute="open")
    r = ask(capi, net, "stats.mean", {"columns": ["systolic_bp"]})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["state"] == "approved"  # no approval required
    assert created["obligations"]["dp_epsilon"] is None
    comp_id = created["id"]
    done = wait_for(capi, net["ent"], comp_id, "released", "failed", "rejected")
    assert done["state"] == "released", done["error"]
    assert [t["event"] for t in done["transitions"]] == [
        "requested",
        "approved",
        "running",
        "released",
    ]
    # Roles: each hospital is input and compute party, the platform computes, the
    # requester is the result party; the security model is recorded with the job.
    roles = {p["party"]: p["roles"] for p in done["participants"]}
    assert roles[net["ent_org"]] == ["result"] and roles["platform"] == ["compute"]
    assert all(roles[h["org"]] == ["input", "compute"] for h in net["hospitals"])
    assert done["security_model"]["security_model"] == "semi-honest"
    bits = platform.compute.paillier_bits
    assert done["security_model"]["keys"] == {"scheme": "paillier", "key_bits": bits}

    r = capi.get(f"/v1/computations/{comp_id}/result", headers=net["ent"])
    assert r.status_code == 200, r.text
    result = r.json()
    group = result["output"]["groups"][0]
    every = [v for h in net["hospitals"] for v in values(h["text"], "systolic_bp")]
    assert Fraction(group["exact"]["mean(systolic_bp)"]) == sum(every) / len(every)
    assert group["rows"] == 180

    # Only the result party receives it; a provider and an outsider do not.
    assert_problem(
        capi.get(f"/v1/computations/{comp_id}/result", headers=net["hospitals"][0]["h"]), 403
    )
    outsider = login(capi, creds, "enterprise-fintech")
    assert_problem(capi.get(f"/v1/computations/{comp_id}", headers=outsider), 403)

    # Every transition, and the delivery, is a ledger entry naming the computation.
    entries = ledger_types(platform, comp_id)
    assert [t for _, t in entries] == [
        "computation.requested",
        "computation.approved",
        "computation.running",
        "computation.released",
        "computation.result_delivered",
    ]
    assert [i for i, _ in entries][:4] == [t["ledger_index"] for t in done["transitions"]]
    assert result["ledger_index"] == entries[-1][0]
    # The plaintext the platform's sandbox read is gone with the job.
    # Decrypted inputs went only to this process's memory-backed directory, and are gone.
    assert not platform.compute.workdir.exists()
    assert [p.name for p in platform.compute.job_dirs.mine.iterdir()] == [".lock"]
    # The job's secret key is gone; the released output stays sealed under a data key.
    with platform.session() as s:
        comp = s.get(Computation, comp_id)
        assert comp is not None and comp.secret_key_id is None and comp.secret_sealed is None
        assert comp.result_key_id is not None
        key = s.get(crypto.models.DataKeyRecord, comp.result_key_id)
        assert key is not None and key.object_ref == f"computation:{comp_id}:result"
        assert comp.result_sealed is not None and b"systolic" not in comp.result_sealed


def test_general4_waits_for_every_provider_then_for_release_review(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    net = setup_network(capi, creds, "general-4")
    ctx = platform.compute
    opened: list[str] = []
    ctx.sandbox = counting_sandbox(opened)
    params = {"columns": ["systolic_bp"], "bins": 8, "range": [80.0, 180.0]}
    r = ask(capi, net, "stats.histogram", params)
    assert r.status_code == 201, r.text
    comp = r.json()
    assert comp["state"] == "awaiting_approval"
    assert comp["obligations"]["dp_epsilon"] == 0.5
    comp_id = comp["id"]
    # The requester cannot approve; nor can a provider twice.
    run = f"/v1/computations/{comp_id}/approve-run"
    release = f"/v1/computations/{comp_id}/approve-release"
    assert_problem(capi.post(run, headers=net["ent"]), 403)
    first, second, third = net["hospitals"]
    # Approving the release of a computation that awaits its run approval changes nothing.
    assert_problem(capi.post(release, headers=first["h"]), 409, "conflict")
    for h in (first, second):
        r = capi.post(run, headers=h["h"])
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "awaiting_approval"
    assert_problem(capi.post(run, headers=first["h"]), 409)
    drain(ctx.runner)  # whatever the approvals queued has run
    assert ctx.sandbox_runs == 0 and opened == []  # no operator code before the last approval
    r = capi.post(run, headers=third["h"])
    assert r.status_code == 200, r.text
    held = wait_for(capi, net["ent"], comp_id, "review", "failed", "rejected")
    assert held["state"] == "review", held["error"]
    assert ctx.sandbox_runs == 1
    assert opened == ["stats.histogram"] * 3  # one isolated run per hospital
    # Held: the requester cannot fetch it; the providers review it.
    assert_problem(capi.get(f"/v1/computations/{comp_id}/result", headers=net["ent"]), 409)
    r = capi.get(f"/v1/computations/{comp_id}/review", headers=first["h"])
    assert r.status_code == 200, r.text
    assert r.json()["dp_epsilon"] == 0.5
    # A late or replayed run approval cannot release the output.
    assert_problem(capi.post(run, headers=first["h"]), 409, "conflict")
    assert capi.get(f"/v1/computations/{comp_id}", headers=net["ent"]).json()["state"] == "review"
    for h in net["hospitals"]:
        r = capi.post(release, headers=h["h"])
        assert r.status_code == 200, r.text
    done = r.json()
    assert done["state"] == "released"
    events = [t["event"] for t in done["transitions"]]
    assert events == [
        "requested",
        "awaiting_approval",
        "provider_approved",
        "provider_approved",
        "provider_approved",
        "approved",
        "running",
        "review",
        "release_approved",
        "release_approved",
        "release_approved",
        "released",
    ]
    assert len(done["decisions"]) == 7  # the request and six approvals, each decided
    out = capi.get(f"/v1/computations/{comp_id}/result", headers=net["ent"]).json()
    assert out["epsilon_spent"] == 0.5
    assert len(out["output"]["bin_edges"]) == 9
    # ε was charged to each dataset's budget.
    with platform.session() as s:
        for h in net["hospitals"]:
            account = s.get(PrivacyBudgetAccount, h["ds"]["id"])
            assert account is not None and account.epsilon_spent == pytest.approx(0.5)


def test_rejected_or_unapproved_computation_never_runs(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    net = setup_network(capi, creds, "general-4", rows=(30, 30, 30))
    ctx = platform.compute
    opened: list[str] = []
    ctx.sandbox = counting_sandbox(opened)
    comp_id = ask(capi, net, "stats.count", {}).json()["id"]
    r = capi.post(f"/v1/computations/{comp_id}/approve", headers=net["hospitals"][0]["h"])
    assert r.status_code == 200
    r = capi.post(
        f"/v1/computations/{comp_id}/reject",
        headers=net["hospitals"][1]["h"],
        json={"reason": "not for this purpose"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "rejected"
    assert_problem(
        capi.post(f"/v1/computations/{comp_id}/approve", headers=net["hospitals"][2]["h"]), 409
    )
    # DP needs clip bounds on sums: refused at request time, before anyone approves.
    r = ask(capi, net, "stats.mean", {"columns": ["systolic_bp"]})
    assert_problem(r, 422, "invalid-input")
    drain(ctx.runner)  # whatever the requests queued has run
    assert ctx.sandbox_runs == 0 and opened == []
    assert [t for _, t in ledger_types(platform, comp_id)][-1] == "computation.rejected"


def test_release_gate_refuses_when_the_budget_is_spent(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    ctx = platform.compute
    ctx.budget = DbPrivacyBudget(ctx.sessions, ctx.clock, epsilon=0.4)
    net = setup_network(capi, creds, "general-4", rows=(40, 40, 40))
    comp_id = ask(capi, net, "stats.count", {}).json()["id"]
    for h in net["hospitals"]:
        assert capi.post(f"/v1/computations/{comp_id}/approve", headers=h["h"]).status_code == 200
    done = wait_for(capi, net["ent"], comp_id, "review", "released", "failed", "rejected")
    assert done["state"] == "rejected"
    assert done["error"]["code"] == "privacy-budget-exhausted"
    assert_problem(capi.get(f"/v1/computations/{comp_id}/result", headers=net["ent"]), 409)


def test_federated_model_across_three_hospitals(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    net = setup_network(capi, creds, "general-1", open_attribute="open")  # exact: no DP
    params = {"features": ["systolic_bp", "age"], "label": "readmitted", "rounds": 3}
    r = ask(capi, net, "fl.logreg", params)
    assert r.status_code == 201, r.text
    comp_id = r.json()["id"]
    done = wait_for(capi, net["ent"], comp_id, "released", "failed", "rejected")
    assert done["state"] == "released", done["error"]
    model = capi.get(f"/v1/computations/{comp_id}/result", headers=net["ent"]).json()["output"]
    assert model["features"] == ["systolic_bp", "age"]
    assert model["rows"] == 180 and len(model["rounds"]) == 3
    assert model["encrypted"] is True and len(model["coef"]) == 2


@pytest.mark.slow
def test_node_held_dataset_stays_on_the_node(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    net = setup_network(capi, creds, "general-1", rows=(50, 40, 30), open_attribute="open")
    org, prov = make_org(capi, creds, "Westbrook District Hospital", "provider")
    r = capi.put("/v1/nodes/me", headers=prov, json={"kind": "embedded"})
    assert r.status_code == 200, r.text
    text = measure_csv(7, 55)
    ds = register_dataset(
        capi,
        prov,
        text,
        "Westbrook ward readings",
        "general-1",
        path="/v1/nodes/datasets",
        open_attribute="open",
    )
    assert ds["custody"] == "node" and ds["rows"] == 55
    # No object and no content key on the platform: only metadata, digests, the scan.
    objects = {p.name.split(".")[0] for p in platform.catalog.objects.root.iterdir()}
    assert ds["id"] not in objects
    with platform.session() as s:
        keys = s.scalars(select(crypto.models.DataKeyRecord.object_ref)).all()
    assert f"dataset:{ds['id']}" not in keys
    preview = capi.get(f"/v1/datasets/{ds['id']}/preview", headers=prov).json()
    assert preview["synthetic"] is True
    active_contract(capi, net["ent"], prov, org, [ds["id"]], PURPOSE)
    body = {
        "operator": "stats.mean",
        "inputs": [ds["id"], *(h["ds"]["id"] for h in net["hospitals"])],
        "params": {"columns": ["systolic_bp", "age"]},
        "purpose": PURPOSE,
    }
    r = capi.post("/v1/computations", headers=net["ent"], json=body)
    assert r.status_code == 201, r.text
    comp_id = r.json()["id"]
    done = wait_for(capi, net["ent"], comp_id, "released", "failed", "rejected")
    assert done["state"] == "released", done["error"]
    assert done["inputs"][0]["custody"] == "node"
    out = capi.get(f"/v1/computations/{comp_id}/result", headers=net["ent"]).json()
    every = values(text, "age") + [v for h in net["hospitals"] for v in values(h["text"], "age")]
    group = out["output"]["groups"][0]
    assert Fraction(group["exact"]["mean(age)"]) == sum(every) / len(every)
    nodes = capi.get("/v1/nodes", headers=prov).json()["items"]
    assert [(n["org_id"], n["kind"]) for n in nodes] == [(org, "embedded")]


def test_computation_list_and_auditor_view(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    net = setup_network(capi, creds, "general-4", rows=(20, 20, 20))
    comp_id = ask(capi, net, "stats.count", {}).json()["id"]
    mine = capi.get("/v1/computations", headers=net["ent"]).json()["items"]
    assert [c["id"] for c in mine] == [comp_id]
    theirs = capi.get("/v1/computations", headers=net["hospitals"][0]["h"]).json()["items"]
    assert [c["id"] for c in theirs] == [comp_id]
    assert capi.get(
        "/v1/computations", headers=login(capi, creds, "enterprise-fintech")
    ).json() == {"items": [], "total": 0, "next": None}
    auditor = login(capi, creds, "auditor")
    seen = capi.get(f"/v1/computations/{comp_id}", headers=auditor).json()
    assert seen["state"] == "awaiting_approval"
    r = capi.get("/v1/ledger/entries", headers=auditor, params={"object_id": comp_id})
    assert r.status_code == 200, r.text
    assert [e["record"]["type"] for e in r.json()["items"]] == [
        "computation.requested",
        "computation.awaiting_approval",
    ]
    # The auditor changes nothing (三员分立).
    assert_problem(capi.post(f"/v1/computations/{comp_id}/approve", headers=auditor), 403)
    assert exchange.ComputationPublic.model_validate(seen).id == comp_id


def test_compute_demo_runs_end_to_end(
    capi: TestClient, creds: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_compute_demo(capi, creds, fl_rounds=2, rows=(120, 90, 150), timeout=300)
    printed = capsys.readouterr().out
    assert "inclusion proof verified" in printed
    hist = summary["results"]["histogram"]
    assert hist["job"]["state"] == "released" and hist["epsilon_spent"] == 0.5
    types = [e["record"]["type"] for e in summary["ledger_entries"]]
    assert types[0] == "computation.requested" and "computation.released" in types
    assert summary["results"]["model"]["output"]["dp"]["epsilon"] == 0.5
    # The hospitals signed every decision with their own keys (SDK-held): CRY-06 holds.
    assert all(h["sdk"].party_key is not None for h in summary["hospitals"])
    r = capi.post("/v1/compliance/runs", headers=login(capi, creds, "security-admin"))
    assert r.status_code == 201, r.text
    cry06 = next(f for f in r.json()["findings"] if f["id"] == "CRY-06")
    assert cry06["status"] == "pass" and cry06["evidence"]["approvals"] == 18, cry06
