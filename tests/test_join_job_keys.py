"""Private joins under a requester-held job key: the platform relays and adds, never decrypts.

On the code before this change the server refused `job_key` on every join (422, "joins run
under the platform's job key for now") and `JoinJob` always made its own Paillier key
(the platform's, sealed under the requester's KEK in the platform's keystore, unsealed
to decrypt the per-group sums before noise), so every test here that sends a job key or
builds a `JoinJob` with `party=` fails there. The control test shows that platform key on
the path that keeps it (platform-held inputs, no `job_key`): it is generated, stored and
destroyed in the platform's own keystore.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, select

from audit.models import AuditRecord
from exchange.computations.job_keys import ComputationJobKey
from exchange.models import Computation
from gateway.platform import Platform
from gateway.settings import Settings
from sandbox._registry import ProviderInput
from sandbox.errors import CohortTooSmall
from sandbox.identifiers import IdKind
from sandbox.join_params import JoinClause, JoinPlan, PsiCardinalityParams, PsiSumParams
from sandbox.join_wire import unframe
from sandbox.joins import JoinJob
from sandbox.operators import StatsParams, default_sandbox
from sandbox.party_stats import PartyJob
from sandbox.psi import ELEMENT
from sandbox.release import InMemoryPrivacyBudget, ReleaseGate, ReleaseObligations
from tests.helpers.i18_wiring import (
    JOIN,
    LEGAL_BASIS,
    PURPOSE,
    approve_all,
    ask_join,
    declare_key,
    join_data,
    join_network,
    register_pi,
    vertical_csvs,
)
from tests.test_api_computations import wait_for
from tests.test_api_contracts import active_contract

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))
from pdx_client.jobkeys import JobKey, JobKeyError, takes_job_key  # noqa: E402

CLAUSE = JoinClause(left_key="mobile", right_key="msisdn", kind=IdKind.PHONE)
DONE = ("released", "failed", "rejected", "review")


@pytest.fixture(scope="module")
def job_key() -> JobKey:
    return JobKey.generate()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProviderInput, ProviderInput, Any]:
    where = tmp_path_factory.mktemp("joinkeys")
    data = join_data(7)
    left, right = where / "cohort.csv", where / "values.csv"
    left.write_text(data.cohort_csv)
    right.write_text(data.values_csv)
    return ProviderInput("org-a", "ds-a", left), ProviderInput("org-b", "ds-b", right), data


def _secrets(key: JobKey) -> set[str]:
    sk = key._sk
    numbers = [int(sk.p), int(sk.q), (int(sk.p) - 1) * (int(sk.q) - 1)]
    return {str(x) for x in numbers} | {format(x, "x") for x in numbers}


def _party_job(
    plan: JoinPlan,
    files: tuple[Any, ...],
    tmp: Path,
    key: JobKey,
    op: str,
    *,
    min_cohort: int = 5,
    dp: dict[str, Any] | None = None,
) -> JoinJob:
    left, right, _ = files
    party = PartyJob("job-1", key.n, providers=2, min_cohort=min_cohort, dp=dp)
    return JoinJob(
        op, plan, left, right, sandbox=default_sandbox(tmp), job_id="job-1", batch=16, party=party
    )


# -- the join in its sandboxes, under the requester's key ---------------------------------------


def test_grouped_mean_under_a_requester_key_is_exact_without_dp(
    files: tuple[Any, ...], tmp_path: Path, job_key: JobKey
) -> None:
    data = files[2]
    params = StatsParams(
        columns=["amount"], group_by="tier", groups=["A", "B"], decimals=2, join=CLAUSE
    )
    job = _party_job(
        JoinPlan(params.query("stats.mean"), CLAUSE), files, tmp_path, job_key, "stats.mean"
    )
    assert job.result_party is None  # no secret key is made on the platform's side
    with pytest.raises(Exception, match="not decrypted here"):
        job.run_protocol()
    gate = ReleaseGate(InMemoryPrivacyBudget())
    doc = job.run_under_party_key(gate, ReleaseObligations(min_cohort=5)).review()
    assert doc["format"] == "pdx-encrypted-aggregate/1" and doc["packing"] is None
    assert doc["key_fingerprint"] == job_key.fingerprint and doc["noise"] is None
    opened = job_key.decrypt(doc)
    assert opened["operator"] == "stats.mean" and opened["statistic"] == "stats.mean"
    assert opened["intersection_size"] == data.count() == 40
    for g in opened["groups"]:
        tier = g["group"]
        if tier not in "AB":
            continue
        assert g["rows"] == data.count(tier)
        assert Fraction(g["exact"]["mean(amount)"]) == data.sum_over(tier) / data.count(tier)
    with pytest.raises(JobKeyError):
        JobKey.generate().decrypt(doc)


def test_psi_sum_under_a_requester_key_carries_both_noise_shares(
    files: tuple[Any, ...], tmp_path: Path, job_key: JobKey
) -> None:
    data = files[2]
    plan = PsiSumParams(join=CLAUSE, value="amount", clip=(0, 100), decimals=2).plan()
    dp = {"epsilon": 1.0, "delta": None, "mechanism": "laplace"}
    job = _party_job(plan, files, tmp_path, job_key, "psi.sum", dp=dp)
    seen: list[tuple[str, str, bytes]] = []
    job.exchange(lambda to, step, d: seen.append((to, step, d)))
    assert {step for _, step, _ in seen} >= {"value.respond", "matcher.pairs", "matcher.result"}
    relayed = b"".join(d for _, _, d in seen)
    for p in data.common:
        assert p.encode() not in relayed and p[-8:].encode() not in relayed
    # The value party's per-record ciphertexts are sealed for the matcher's sandbox (the
    # two parties' X25519 agreement): even the requester's key, handed to the platform,
    # opens none of them. Unsealed, each record's first field decrypts to 1.
    width = (2 * job_key.n.bit_length() + 7) // 8
    opened_any = 0
    for _, step, d in seen:
        if step != "matcher.pairs":
            continue
        header, body = unframe(d)
        cts = body[int(header["count"]) * ELEMENT :]
        for at in range(0, len(cts) - width + 1, 3 * width):  # (rows, n, sum) per record
            c = int.from_bytes(cts[at : at + width], "big")
            if 0 < c < job_key.n**2 and job_key._sk.raw_decrypt(c) == 1:
                opened_any += 1
    assert sum(1 for _, step, _ in seen if step == "matcher.pairs") >= 2
    assert opened_any == 0
    # Each party's sandbox adds a full share (n = 2, t = 1): the released values differ
    # from the plaintext join by noise, run after run, and stay within it.
    gate = ReleaseGate(InMemoryPrivacyBudget())
    doc = job.run_under_party_key(gate, ReleaseObligations(min_cohort=5, dp_epsilon=1.0))
    body = doc.review()
    assert body["noise"]["providers"] == 2 and body["noise"]["tolerated"] == 1
    assert doc.epsilon_spent == 1.0
    opened = job_key.decrypt(body)
    g = opened["groups"][0]
    assert opened["operator"] == "psi.sum" and g["exact"] == {}
    # Laplace of scale k·Δ/ε per field (k = 3 fields, Δ = 100 for the sum), two shares:
    # 20 scales is far beyond any draw that happens.
    assert abs(g["values"]["sum(amount)"] - float(data.sum_over())) < 20 * 300
    assert abs(g["rows"] - data.count()) < 20 * 3


def test_below_the_minimum_intersection_the_matcher_refuses(
    files: tuple[Any, ...], tmp_path: Path, job_key: JobKey
) -> None:
    plan = PsiCardinalityParams(join=CLAUSE).plan()
    job = _party_job(plan, files, tmp_path, job_key, "psi.cardinality", min_cohort=41)
    with pytest.raises(CohortTooSmall) as caught:
        job.run_under_party_key(
            ReleaseGate(InMemoryPrivacyBudget()), ReleaseObligations(min_cohort=41)
        )
    assert caught.value.code == "join-intersection-too-small"
    job = _party_job(plan, files, tmp_path, job_key, "psi.cardinality", min_cohort=40)
    doc = job.run_under_party_key(
        ReleaseGate(InMemoryPrivacyBudget()), ReleaseObligations(min_cohort=40)
    )
    assert job_key.decrypt(doc.review())["intersection_size"] == 40


# -- through the server --------------------------------------------------------------------------


def _key_events(platform: Platform, comp_id: str) -> list[str]:
    with platform.session() as s:
        rows = s.scalars(
            select(AuditRecord).where(AuditRecord.detail.contains(f"computation:{comp_id}:job-key"))
        ).all()
        return [r.event_type for r in rows]


def _everything_stored(platform: Platform, settings: Settings) -> str:
    """Every row of every table, and every file under the test's home and database dir."""
    parts: list[str] = []
    with platform.session() as s:
        meta = MetaData()
        meta.reflect(bind=s.get_bind())
        for table in meta.sorted_tables:
            parts += [repr(tuple(row)) for row in s.execute(table.select())]
    for f in settings.home.resolve().parent.rglob("*"):
        if f.is_file():
            parts.append(f.read_bytes().decode("latin-1"))
    return "\n".join(parts)


def test_the_platform_key_path_holds_the_join_secret_key(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    """Control (today's path, kept for platform-held inputs): the platform makes the key."""
    data = join_data(41)
    net = join_network(capi, creds, data)
    r = ask_join(capi, net, "psi.cardinality", {"join": JOIN}, [net["cohort"], net["values"]])
    assert r.status_code == 201, r.text
    approve_all(capi, net, r.json()["id"])
    done = wait_for(capi, net["ent"], r.json()["id"], *DONE)
    assert done["state"] == "released", done["error"]
    events = _key_events(platform, done["id"])
    # Generated and stored in the platform's keystore (then unsealed to decrypt), destroyed.
    assert "key.stored" in events and "key.destroyed" in events, events
    out = capi.get(f"/v1/computations/{done['id']}/result", headers=net["ent"]).json()["output"]
    assert out["operator"] == "psi.cardinality" and "ciphertexts" not in out


def test_psi_sum_under_a_requester_key_through_the_server(
    capi: TestClient,
    creds: dict[str, Any],
    platform: Platform,
    settings: Settings,
    job_key: JobKey,
) -> None:
    # 120 in common: the two Laplace shares of scale 5 on the count (min 20) put 40 below
    # the minimum in about 3 runs in 100; 100 below it, never.
    data = join_data(42, cohort=160, values=160, common=120)
    net = join_network(capi, creds, data)
    params = {"join": JOIN, "value": "amount", "clip": [0, 100], "decimals": 2}
    inputs = [net["cohort"], net["values"]]
    body = {**params}
    r = capi.post(
        "/v1/computations",
        headers=net["ent"],
        json={
            "operator": "psi.sum",
            "inputs": inputs,
            "params": body,
            "purpose": PURPOSE,
            "legal_basis": LEGAL_BASIS,
            "job_key": job_key.public(),
        },
    )
    assert r.status_code == 201, r.text
    comp = r.json()
    assert comp["security_model"]["job_key"]["fingerprint"] == job_key.fingerprint
    assert comp["obligations"]["min_intersection"] == 20
    approve_all(capi, net, comp["id"])
    done = wait_for(capi, net["ent"], comp["id"], *DONE)
    if done["state"] == "review":
        approve_all(capi, net, comp["id"])
        done = wait_for(capi, net["ent"], comp["id"], "released", "failed", "rejected")
    assert done["state"] == "released", done["error"]
    approvals = [d for d in done["decisions"] if d["action"] == "computation.approve"]
    assert approvals and all(d["job_key_fingerprint"] == job_key.fingerprint for d in approvals)

    result = capi.get(f"/v1/computations/{comp['id']}/result", headers=net["ent"]).json()
    out = result["output"]
    assert out["format"] == "pdx-encrypted-aggregate/1" and out["join_operator"] == "psi.sum"
    assert out["dp"]["epsilon"] == 0.6 and out["noise"]["tolerated"] == 1
    opened = job_key.decrypt(result)
    g = opened["groups"][0]
    assert opened["operator"] == "psi.sum" and opened["decrypted_by"] == "requester"
    assert g["exact"] == {}  # DP: noised by the providers' shares
    # Laplace at ε = 0.6 over 3 fields with Δ = 100: scale 500 per share, two shares.
    assert abs(g["values"]["sum(amount)"] - float(data.sum_over())) < 20 * 500
    assert abs(opened["intersection_size"] - data.count()) < 20 * 5
    assert all(p not in repr(result) for p in data.common)

    # The platform never held a secret key for this job: no sealed key on the row, no
    # job-key data key ever made in its keystore, and p, q, λ nowhere it stores anything.
    with platform.session() as s:
        row = s.get(Computation, comp["id"])
        assert row is not None and row.secret_sealed is None and row.secret_key_id is None
        stored = s.get(ComputationJobKey, comp["id"])
        assert stored is not None and int(stored.public_n, 16) == job_key.n
    assert _key_events(platform, comp["id"]) == []
    everything = _everything_stored(platform, settings)
    assert str(job_key.n)[:40] not in everything  # (decimal n is not stored either)
    assert format(job_key.n, "x") in everything  # the search does reach the public key
    assert not any(x in everything for x in _secrets(job_key))


def test_the_server_and_the_sdk_agree_on_which_joins_take_a_job_key(
    capi: TestClient, creds: dict[str, Any], job_key: JobKey
) -> None:
    data = join_data(43)
    net = join_network(capi, creds, data)
    inputs = [net["cohort"], net["values"]]
    for op, params in (
        ("psi.cardinality", {"join": JOIN}),
        ("psi.sum", {"join": JOIN, "value": "amount", "clip": [0, 100], "decimals": 2}),
        ("stats.count", {"join": JOIN}),
    ):
        assert takes_job_key(op, params)
        r = capi.post(
            "/v1/computations",
            headers=net["ent"],
            json={
                "operator": op,
                "inputs": inputs,
                "params": params,
                "purpose": PURPOSE,
                "legal_basis": LEGAL_BASIS,
                "job_key": job_key.public(),
            },
        )
        assert r.status_code == 201, (op, r.text)
    # Vertical LR takes one too (tests/test_hetero_job_keys.py): each party's weights
    # leave encrypted under it. (Other datasets: the requester's budget on these is spent.)
    guest_csv, host_csv, _ = vertical_csvs(43)
    vertical = []
    for who, text, name in (("tel", guest_csv, "labels"), ("bank", host_csv, "features")):
        ds = register_pi(capi, net[who], text, name)["id"]
        active_contract(capi, net["ent"], net[who], net[f"{who}_org"], [ds], PURPOSE)
        declare_key(capi, net[who], ds, "tel")
        vertical.append(ds)
    hetero = {
        "kind": "phone",
        "keys": ["tel", "tel"],
        "label": "label",
        "features": [["f0"], ["g0", "g1"]],
    }
    assert takes_job_key("fl.hetero_logreg", hetero)
    r = capi.post(
        "/v1/computations",
        headers=net["ent"],
        json={
            "operator": "fl.hetero_logreg",
            "inputs": vertical,
            "params": hetero,
            "purpose": PURPOSE,
            "legal_basis": LEGAL_BASIS,
            "job_key": job_key.public(),
        },
    )
    assert r.status_code == 201, r.text


def test_a_node_held_join_under_a_requester_key_runs_its_side_on_the_node(
    capi: TestClient, creds: dict[str, Any], platform: Platform, job_key: JobKey
) -> None:
    """The node checks every step's call against the job key its provider approved."""
    data = join_data(44)
    net = join_network(capi, creds, data, declare=False)
    r = capi.put("/v1/nodes/me", headers=net["bank"], json={"kind": "embedded"})
    assert r.status_code == 200, r.text
    held = register_pi(
        capi, net["bank"], data.values_csv, "balances (node)", path="/v1/nodes/datasets"
    )
    active_contract(capi, net["ent"], net["bank"], net["bank_org"], [held["id"]], PURPOSE)
    declare_key(capi, net["tel"], net["cohort"], "mobile")
    declare_key(capi, net["bank"], held["id"], "msisdn")
    r = capi.post(
        "/v1/computations",
        headers=net["ent"],
        json={
            "operator": "psi.cardinality",
            "inputs": [net["cohort"], held["id"]],
            "params": {"join": JOIN},
            "purpose": PURPOSE,
            "legal_basis": LEGAL_BASIS,
            "job_key": job_key.public(),
        },
    )
    assert r.status_code == 201, r.text
    approve_all(capi, net, r.json()["id"])
    done = wait_for(capi, net["ent"], r.json()["id"], *DONE)
    assert done["state"] == "released", done["error"]
    assert done["inputs"][1]["custody"] == "node"
    result = capi.get(f"/v1/computations/{done['id']}/result", headers=net["ent"]).json()
    opened = job_key.decrypt(result)
    assert opened["operator"] == "psi.cardinality"
    assert abs(opened["intersection_size"] - data.count()) < 20 * 2
    with platform.session() as s:
        row = s.get(Computation, done["id"])
        assert row is not None and row.secret_sealed is None and row.secret_key_id is None
    assert _key_events(platform, done["id"]) == []


def test_grouped_mean_over_a_join_under_a_requester_key(
    capi: TestClient, creds: dict[str, Any], job_key: JobKey
) -> None:
    """`stats.*` with a join: per-group noisy sums the SDK turns into clamped means."""
    data = join_data(45, cohort=160, values=160, common=120)
    net = join_network(capi, creds, data)
    params = {
        "columns": ["amount"],
        "group_by": "tier",
        "groups": ["A", "B"],
        "clip": [0, 100],
        "decimals": 2,
        "join": JOIN,
    }
    r = capi.post(
        "/v1/computations",
        headers=net["ent"],
        json={
            "operator": "stats.mean",
            "inputs": [net["cohort"], net["values"]],
            "params": params,
            "purpose": PURPOSE,
            "legal_basis": LEGAL_BASIS,
            "job_key": job_key.public(),
        },
    )
    assert r.status_code == 201, r.text
    approve_all(capi, net, r.json()["id"])
    done = wait_for(capi, net["ent"], r.json()["id"], *DONE)
    assert done["state"] == "released", done["error"]
    result = capi.get(f"/v1/computations/{done['id']}/result", headers=net["ent"]).json()
    assert result["output"]["groups"] == ["A", "B", "__other__"]  # the layout, not the data
    opened = job_key.decrypt(result)
    assert opened["operator"] == "stats.mean" and opened["group_by"] == "tier"
    released = {g["group"]: g for g in opened["groups"]}
    assert {"A", "B"} <= set(released)
    for tier in "AB":
        g = released[tier]
        # ε = 0.6 over 3 fields: count noise of scale 5 per share.
        assert abs(g["rows"] - data.count(tier)) < 20 * 5
        assert g["exact"] == {} and 0 <= g["values"]["mean(amount)"] <= 100
