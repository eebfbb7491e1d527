"""Requester-held job keys through the API: validation, encrypted results, decryption by the SDK.

On the code before job keys, `ComputationCreate` forbids unknown fields, so every request
here carrying `job_key` was answered 422 and no test below could pass; the secret-key
assertions (`secret_sealed` never written) fail on that code too, since it sealed a
platform-made secret key for every job.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import phe  # type: ignore[import-untyped]
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from exchange.computations.job_keys import ComputationJobKey
from exchange.models import Computation
from gateway.platform import Platform
from tests.helpers.api import assert_problem
from tests.test_api_computations import PURPOSE, ask, setup_network, values, wait_for
from tests.test_api_contracts import active_contract, make_org, measure_csv, register_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))
from pdx_client.jobkeys import JobKey, JobKeyError  # noqa: E402


@pytest.fixture(scope="module")
def job_key() -> JobKey:
    return JobKey.generate()


def _secret_numbers(key: JobKey) -> list[int]:
    sk = key._sk
    return [int(sk.p), int(sk.q), (int(sk.p) - 1) * (int(sk.q) - 1)]


def test_job_key_must_be_long_enough_and_match_its_fingerprint(
    capi: TestClient, creds: dict[str, Any], job_key: JobKey
) -> None:
    net = setup_network(capi, creds, "general-2", rows=(20, 20, 20))
    body = {
        "operator": "stats.count",
        "inputs": [h["ds"]["id"] for h in net["hospitals"]],
        "params": {},
        "purpose": PURPOSE,
    }
    pk, _ = phe.generate_paillier_keypair(n_length=1024)
    short = {"scheme": "paillier", "n": format(pk.n, "x")}
    from pdx_client.jobkeys import fingerprint_of

    short["fingerprint"] = fingerprint_of("paillier", pk.n)
    r = capi.post("/v1/computations", headers=net["ent"], json={**body, "job_key": short})
    problem = assert_problem(r, 422, "invalid-input")
    assert problem["field"] == "job_key.n" and "2048" in problem["detail"]
    wrong = {**job_key.public(), "fingerprint": "sha256:" + "0" * 64}
    r = capi.post("/v1/computations", headers=net["ent"], json={**body, "job_key": wrong})
    assert assert_problem(r, 422, "invalid-input")["field"] == "job_key.fingerprint"
    r = capi.post("/v1/computations", headers=net["ent"], json={**body, "job_key": {"n": "zz"}})
    assert_problem(r, 422)
    # fl.logreg takes a job key since s13 (tests/test_fl_job_keys.py).
    with capi.app.state.platform.session() as s:  # type: ignore[attr-defined]
        assert s.scalars(select(Computation)).all() == []


def test_dp_count_under_a_requester_key_is_opened_only_by_the_requester(
    capi: TestClient, creds: dict[str, Any], platform: Platform, job_key: JobKey
) -> None:
    """general-4: provider approval and DP; the platform stores ciphertext, no secret key."""
    net = setup_network(capi, creds, "general-4", rows=(60, 45, 75))
    body = {
        "operator": "stats.mean",
        "inputs": [h["ds"]["id"] for h in net["hospitals"]],
        "params": {"columns": ["age"], "clip": [0, 100]},
        "purpose": PURPOSE,
        "job_key": job_key.public(),
    }
    r = capi.post("/v1/computations", headers=net["ent"], json=body)
    assert r.status_code == 201, r.text
    comp_id = r.json()["id"]
    assert r.json()["security_model"]["job_key"]["fingerprint"] == job_key.fingerprint
    for h in net["hospitals"]:
        assert capi.post(f"/v1/computations/{comp_id}/approve", headers=h["h"]).status_code == 200
    done = wait_for(capi, net["ent"], comp_id, "review", "released", "failed", "rejected")
    if done["state"] == "review":
        for h in net["hospitals"]:
            r = capi.post(f"/v1/computations/{comp_id}/approve", headers=h["h"])
            assert r.status_code == 200, r.text
        done = wait_for(capi, net["ent"], comp_id, "released", "failed", "rejected")
    assert done["state"] == "released", done["error"]
    assert done["epsilon_spent"] is not None  # charged by the platform before running
    approvals = [d for d in done["decisions"] if d["action"] == "computation.approve"]
    assert approvals and all(d["job_key_fingerprint"] == job_key.fingerprint for d in approvals)
    result = capi.get(f"/v1/computations/{comp_id}/result", headers=net["ent"]).json()
    out = result["output"]
    assert out["format"] == "pdx-encrypted-aggregate/1" and "groups" in out
    assert out["key_fingerprint"] == job_key.fingerprint and out["addends"] == 3
    assert out["noise"]["tolerated"] == 1 and out["dp"]["epsilon"] > 0
    opened = job_key.decrypt(result)
    group = opened["groups"][0]
    assert opened["decrypted_by"] == "requester" and group["exact"] == {}
    assert abs(group["rows"] - 180) < 60  # noisy, but the count of 180 rows
    assert 0 <= group["values"]["mean(age)"] <= 100  # post-processing: inside the clip
    # Another key cannot open it; the platform kept no secret and no plaintext result.
    with pytest.raises(JobKeyError):
        JobKey.generate().decrypt(result)
    with platform.session() as s:
        comp = s.get(Computation, comp_id)
        assert comp is not None and comp.secret_sealed is None and comp.secret_key_id is None
        stored = s.get(ComputationJobKey, comp_id)
        assert stored is not None and int(stored.public_n, 16) == job_key.n
    secrets_ = {str(x) for x in _secret_numbers(job_key)} | {
        format(x, "x") for x in _secret_numbers(job_key)
    }
    dump = repr(done) + repr(result)
    assert not any(x in dump for x in secrets_)


@pytest.mark.slow
def test_exact_mean_on_an_embedded_node_under_a_requester_key(
    capi: TestClient, creds: dict[str, Any], job_key: JobKey
) -> None:
    """Open general-1 data (no DP): the node's partial and two platform-held ones, masked;
    the exact mean."""
    net = setup_network(capi, creds, "general-1", rows=(50, 40, 30), open_attribute="open")
    org, prov = make_org(capi, creds, "Westbrook District Hospital", "provider")
    assert capi.put("/v1/nodes/me", headers=prov, json={"kind": "embedded"}).status_code == 200
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
    active_contract(capi, net["ent"], prov, org, [ds["id"]], PURPOSE)
    body = {
        "operator": "stats.mean",
        "inputs": [ds["id"], *(h["ds"]["id"] for h in net["hospitals"])],
        "params": {"columns": ["age"]},
        "purpose": PURPOSE,
        "job_key": job_key.public(),
    }
    r = capi.post("/v1/computations", headers=net["ent"], json=body)
    assert r.status_code == 201, r.text
    done = wait_for(capi, net["ent"], r.json()["id"], "released", "failed", "rejected")
    assert done["state"] == "released", done["error"]
    result = capi.get(f"/v1/computations/{done['id']}/result", headers=net["ent"]).json()
    group = job_key.decrypt(result)["groups"][0]
    every = values(text, "age") + [v for h in net["hospitals"] for v in values(h["text"], "age")]
    assert Fraction(group["exact"]["mean(age)"]) == sum(every) / len(every)


def test_a_provider_below_the_cohort_refuses_its_part(
    capi: TestClient, creds: dict[str, Any], job_key: JobKey
) -> None:
    """Each provider checks its own count: 5 rows < 10 refuses, though the total is 85."""
    net = setup_network(capi, creds, "general-2", rows=(50, 30, 5))
    r = ask(capi, net, "stats.count", {})
    assert r.status_code == 201  # without a job key: the platform's total decides (85 ≥ 10)
    body = {
        "operator": "stats.count",
        "inputs": [h["ds"]["id"] for h in net["hospitals"]],
        "params": {},
        "purpose": PURPOSE,
        "job_key": job_key.public(),
    }
    r = capi.post("/v1/computations", headers=net["ent"], json=body)
    assert r.status_code == 201, r.text
    done = wait_for(capi, net["ent"], r.json()["id"], "released", "failed", "rejected")
    assert done["state"] == "rejected"
    assert done["error"]["code"] == "release-cohort-too-small"


def test_an_exported_key_opens_only_with_its_passphrase(job_key: JobKey) -> None:
    data = job_key.export("correct horse battery staple")
    for x in _secret_numbers(job_key)[:2]:  # p and q are not in the export in the clear
        assert str(x).encode() not in data and format(x, "x").encode() not in data
    again = JobKey.load(data, "correct horse battery staple")
    assert again.fingerprint == job_key.fingerprint and again.public() == job_key.public()
    with pytest.raises(JobKeyError):
        JobKey.load(data, "wrong passphrase")
    with pytest.raises(JobKeyError):
        JobKey.load(data[:-1] + bytes([data[-1] ^ 1]), "correct horse battery staple")
