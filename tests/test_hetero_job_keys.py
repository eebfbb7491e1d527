"""Vertical logistic regression under a requester-held job key: the weights leave encrypted.

On the code before this change `HeteroJob` had no `party` (every test here building one
with `party=` fails with a TypeError), each party's sandbox returned its weights in
plaintext JSON for the platform to assemble, noise and store, and the server refused a
`job_key` on `fl.hetero_logreg` (422), so the server tests fail at their request.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from exchange.computations.job_keys import ComputationJobKey
from exchange.models import Computation, PrivacyBudgetAccount
from gateway.platform import Platform
from gateway.settings import Settings
from sandbox._registry import ProviderInput
from sandbox.errors import IntersectionTooSmall, InvalidParameters
from sandbox.operators import default_sandbox
from sandbox.party_stats import PartyJob
from sandbox.release import InMemoryPrivacyBudget, ReleaseGate, ReleaseObligations
from sandbox.vertical_dp import weights_sigma
from sandbox.vertical_keys import SCALE_BITS
from sandbox.vertical_ops import HeteroJob
from sandbox.vertical_params import HeteroParams
from tests.helpers.breast_cancer import breast_cancer, central_accuracy
from tests.helpers.i15_keys import encodings
from tests.helpers.i18_wiring import (
    HETERO,
    LEGAL_BASIS,
    PURPOSE,
    approve_all,
    declare_key,
    join_data,
    join_network,
    register_pi,
    vertical_csvs,
)
from tests.test_api_computations import wait_for
from tests.test_api_contracts import active_contract
from tests.test_join_job_keys import _everything_stored, _key_events, _secrets
from tests.test_vertical_job import PARAMS, _tables

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))
from pdx_client.jobkeys import JobKey, JobKeyError  # noqa: E402

DONE = ("released", "failed", "rejected", "review")


@pytest.fixture(scope="module")
def job_key() -> JobKey:
    return JobKey.generate()


def _flat(weights: list[Any]) -> np.ndarray[Any, Any]:
    """The platform-key path's order: guest features, hosts', then the intercept."""
    return np.concatenate([weights[0][:-1], *weights[1:], weights[0][-1:]])


def _opened_flat(opened: dict[str, Any], datasets: list[str]) -> np.ndarray[Any, Any]:
    vals = [v for d in datasets for v in opened["weights"][d].values()]
    return np.asarray([*vals, opened["intercept"]])


def _job(tmp: Path, files: list[Any], party: PartyJob | None, job_id: str, **kw: Any) -> HeteroJob:
    sandbox = default_sandbox(tmp)
    return HeteroJob(
        PARAMS, files, sandbox=sandbox, job_id=job_id, key_bits=1024, party=party, **kw
    )


# -- in the parties' sandboxes -------------------------------------------------------------------


def test_weights_leave_encrypted_to_the_requester_and_equal_the_platform_path(
    tmp_path: Path, job_key: JobKey
) -> None:
    files, _ = _tables(tmp_path)
    plain = _job(tmp_path, files, None, "v-plain", clip_rows=False)  # DP off: no clip
    weights, _rows = plain.train()
    reference = _flat(weights)

    party = PartyJob("v-key", job_key.n, providers=3, min_cohort=20, dp=None)
    job = _job(tmp_path, files, party, "v-key")
    seen: list[tuple[str, str, bytes]] = []
    job.record = lambda to, step, data: seen.append((to, step, data))
    with pytest.raises(InvalidParameters):
        job.train()  # no plaintext weights under a requester-held key
    release = job.run_under_party_key(
        ReleaseGate(InMemoryPrivacyBudget()), ReleaseObligations(min_cohort=20)
    )
    doc = release.review()
    assert doc["format"] == "pdx-encrypted-aggregate/1" and doc["operator"] == "fl.hetero_logreg"
    assert doc["key_fingerprint"] == job_key.fingerprint and doc["dp"] is None
    assert "weights" not in doc and "aligned_rows" not in doc
    opened = job_key.decrypt(doc)
    assert opened["decrypted_by"] == "requester" and opened["dp_epsilon"] is None
    assert {d: list(w) for d, w in opened["weights"].items()} == {
        "ds-g": ["f0", "f1"], "ds-h1": ["g0", "g1"], "ds-h2": ["h0", "h1"]
    }  # fmt: skip
    got = _opened_flat(opened, ["ds-g", "ds-h1", "ds-h2"])
    # The same protocol, the same weights: only the fixed point of the release differs.
    assert np.allclose(got, reference, atol=1e-6), (got, reference)
    with pytest.raises(JobKeyError):
        JobKey.generate().decrypt(doc)

    # What the platform relayed and received: no weight in plaintext (fixed point or float),
    # no row positions in the clear, and each party's output only ciphertexts.
    outputs = [d for to, _, d in seen if to == "platform"]
    assert len(outputs) == 3
    for out in outputs:
        assert set(json.loads(out)) == {"ciphertexts", "scale_bits"}
    needles = []
    for w in reference:
        needles += list(encodings(abs(round(float(w) * (1 << SCALE_BITS)))).values())
        needles += [np.float64(w).tobytes(), repr(float(w))[:8].encode()]
    relayed = [d for _, _, d in seen]
    assert not [n for n in needles for d in relayed if n in d]
    assert not any(b"positions" in d for d in relayed)
    assert {step for _, step, _ in seen if step == "host.align"} == {"host.align"}


def test_a_tampered_alignment_is_refused_by_the_host(tmp_path: Path, job_key: JobKey) -> None:
    """The platform cannot read or substitute the guest's sealed alignment (key, positions)."""
    files, _ = _tables(tmp_path)
    party = PartyJob("v-tamper", job_key.n, providers=3, min_cohort=20, dp=None)
    job = _job(tmp_path, files, party, "v-tamper")
    original = job._call

    def swap(session: Any, to: str, step: str, blobs: dict[str, bytes], **p: Any) -> bytes:
        if step == "host.align":  # e.g. the platform's own Paillier key in the guest's place
            sealed = bytearray(blobs["sealed"])
            sealed[len(sealed) // 2] ^= 1
            blobs = {"sealed": bytes(sealed)}
        return original(session, to, step, blobs, **p)

    job._call = swap  # type: ignore[method-assign]
    with pytest.raises(InvalidParameters, match="alignment failed authentication"):
        job.run_under_party_key(
            ReleaseGate(InMemoryPrivacyBudget()), ReleaseObligations(min_cohort=20)
        )


def test_each_party_noises_its_own_block_before_encrypting(tmp_path: Path, job_key: JobKey) -> None:
    files, _ = _tables(tmp_path)
    exact = _flat(_job(tmp_path, files, None, "v-exact").train()[0])
    dp = {"epsilon": 1.0, "delta": 1e-6, "mechanism": "gaussian"}
    party = PartyJob("v-dp", job_key.n, providers=3, min_cohort=20, dp=dp)
    budget = InMemoryPrivacyBudget()
    release = _job(tmp_path, files, party, "v-dp").run_under_party_key(
        ReleaseGate(budget), ReleaseObligations(min_cohort=20, dp_epsilon=1.0)
    )
    assert release.epsilon_spent == 1.0
    assert {(c.dataset_id, c.epsilon, c.delta) for c in budget.ledger} == {
        (d, 1.0, 1e-6) for d in ("ds-g", "ds-h1", "ds-h2")
    }
    doc = release.review()
    sigma = weights_sigma(PARAMS.C, 1.0, 1e-6)
    assert doc["noise"]["sigma"] == pytest.approx(sigma) and doc["dp"] == dp
    noisy = _opened_flat(job_key.decrypt(doc), ["ds-g", "ds-h1", "ds-h2"])
    diff = noisy - exact
    # σ ≈ 13.2 per coordinate (the weights get 0.8 of ε = 1): every coordinate noised,
    # none beyond 6σ.
    assert np.all(np.abs(diff) > 1e-6) and np.all(np.abs(diff) < 6 * sigma), diff

    # A binding that names another mechanism is refused in the sandbox (nothing leaves).
    laplace = {"epsilon": 1.0, "delta": 0.0, "mechanism": "laplace"}
    party = PartyJob("v-lap", job_key.n, providers=3, min_cohort=20, dp=laplace)
    with pytest.raises(InvalidParameters, match="Gaussian"):
        _job(tmp_path, files, party, "v-lap").exchange()


def test_the_approved_minimum_holds_whatever_the_platform_relays(
    tmp_path: Path, job_key: JobKey
) -> None:
    files, _ = _tables(tmp_path)  # 100 aligned rows
    party = PartyJob("v-min", job_key.n, providers=3, min_cohort=101, dp=None)
    job = _job(tmp_path, files, party, "v-min", min_rows=1)  # the relay asks for less
    with pytest.raises(IntersectionTooSmall):
        job.exchange()


@pytest.mark.slow
def test_breast_cancer_under_a_requester_key_is_within_one_point_of_sklearn(
    tmp_path: Path, job_key: JobKey
) -> None:
    """Must-show 1 on this path: DP off, labels + 10 features at the guest, 10 per host."""
    from tests.test_hetero_lr import GUEST, HOST1, HOST2

    data = breast_cancer()
    x, y = data["x_tr"], data["y_tr"]
    ids = [f"138{i:08d}" for i in range(len(y))]
    files = []
    for name, cols, label in (("g", GUEST, True), ("h1", HOST1, False), ("h2", HOST2, False)):
        head = ",".join(["tel", *(f"x{c}" for c in cols), *(["label"] if label else [])])
        lines = [head] + [
            ",".join([ids[i], *(f"{x[i, c]:.8f}" for c in cols), *([str(y[i])] if label else [])])
            for i in range(len(y))
        ]
        path = tmp_path / f"{name}.csv"
        path.write_text("\n".join(lines) + "\n")
        files.append(ProviderInput(name, f"ds-{name}", path))
    params = HeteroParams(
        kind="phone",
        keys=["tel"] * 3,
        label="label",
        features=[[f"x{c}" for c in cols] for cols in (GUEST, HOST1, HOST2)],
        iterations=20,
    )
    party = PartyJob("v-bc", job_key.n, providers=3, min_cohort=20, dp=None)
    job = HeteroJob(
        params, files, sandbox=default_sandbox(tmp_path), job_id="v-bc", key_bits=1024,
        party=party,
    )  # fmt: skip
    doc = job.run_under_party_key(
        ReleaseGate(InMemoryPrivacyBudget()), ReleaseObligations(min_cohort=20)
    ).review()
    opened = job_key.decrypt(doc)
    # Without DP the parties only standardise their aligned rows (no DP clip): the test
    # rows go through the same transform, fitted on the training rows, per party.
    x_te = data["x_te"]
    z = np.full(len(x_te), opened["intercept"])
    for name, cols in (("g", GUEST), ("h1", HOST1), ("h2", HOST2)):
        w = np.asarray(list(opened["weights"][f"ds-{name}"].values()))
        part_tr, part_te = x[:, cols], x_te[:, cols]
        z = z + (part_te - part_tr.mean(axis=0)) / part_tr.std(axis=0) @ w
    acc = float(((z > 0) == data["y_te"]).mean())
    central = central_accuracy()
    assert abs(acc - central) <= 0.01, (acc, central)


# -- through the server ----------------------------------------------------------------------------


def _vertical_network(capi: TestClient, creds: dict[str, Any], seed: int) -> dict[str, Any]:
    """A guest (telecom: labels, f0, f1) and a host (bank: g0, g1), general-3 (DP ε = 0.6)."""
    guest_csv, host_csv, _ = vertical_csvs(seed)
    net: dict[str, Any] = join_network(capi, creds, join_data(seed), declare=False)
    guest = register_pi(capi, net["tel"], guest_csv, "churn labels")["id"]
    host = register_pi(capi, net["bank"], host_csv, "account features")["id"]
    for who, ds in (("tel", guest), ("bank", host)):
        active_contract(capi, net["ent"], net[who], net[f"{who}_org"], [ds], PURPOSE)
        declare_key(capi, net[who], ds, "tel")
    net["inputs"] = [guest, host]
    return net


def _run(capi: TestClient, net: dict[str, Any], job_key: JobKey | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "operator": "fl.hetero_logreg",
        "inputs": net["inputs"],
        "params": HETERO,
        "purpose": PURPOSE,
        "legal_basis": LEGAL_BASIS,
    }
    if job_key is not None:
        body["job_key"] = job_key.public()
    r = capi.post("/v1/computations", headers=net["ent"], json=body)
    assert r.status_code == 201, r.text
    approve_all(capi, net, r.json()["id"])
    done = wait_for(capi, net["ent"], r.json()["id"], *DONE)
    if done["state"] == "review":
        approve_all(capi, net, done["id"])
        done = wait_for(capi, net["ent"], done["id"], "released", "failed", "rejected")
    assert done["state"] == "released", done["error"]
    result: dict[str, Any] = capi.get(
        f"/v1/computations/{done['id']}/result", headers=net["ent"]
    ).json()
    return {"done": done, "result": result}


def test_hetero_lr_under_a_requester_key_through_the_server_matches_the_platform_path(
    tmp_path: Path,
    capi: TestClient,
    creds: dict[str, Any],
    platform: Platform,
    settings: Settings,
    job_key: JobKey,
) -> None:
    net = _vertical_network(capi, creds, 61)
    guest, host = net["inputs"]
    # Under the policy's DP (ε = 0.6 for general-3): each party's noise, ε charged to both.
    keyed = _run(capi, net, job_key)
    done = keyed["done"]
    out = keyed["result"]["output"]
    assert out["format"] == "pdx-encrypted-aggregate/1" and "weights" not in out
    assert out["dp"]["epsilon"] == 0.6 and out["dp"]["mechanism"] == "gaussian"
    noisy = job_key.decrypt(keyed["result"])
    sigma = weights_sigma(1.0, 0.6, 1e-6)
    assert out["noise"]["sigma"] == pytest.approx(sigma) and noisy["dp_epsilon"] == 0.6
    approvals = [d for d in done["decisions"] if d["action"] == "computation.approve"]
    assert len(approvals) == 2
    assert all(d["job_key_fingerprint"] == job_key.fingerprint for d in approvals)
    assert done["security_model"]["job_key"]["fingerprint"] == job_key.fingerprint
    with platform.session() as s:
        spent = {
            a.dataset_id: a.epsilon_spent
            for a in s.scalars(select(PrivacyBudgetAccount))
            if a.dataset_id in net["inputs"]
        }
        row = s.get(Computation, done["id"])
        assert row is not None and row.secret_sealed is None and row.secret_key_id is None
        assert s.get(ComputationJobKey, done["id"]) is not None
    assert spent == {guest: 0.6, host: 0.6}
    assert _key_events(platform, done["id"]) == []

    # The platform-key path on the same data: the same model plus the same noise law. The
    # exact model (DP off, the parties' sandboxes as the server runs them) is the reference.
    plain = _run(capi, net, None)["result"]["output"]
    assert plain["dp_epsilon"] == 0.6 and "ciphertexts" not in plain
    guest_csv, host_csv, _ = vertical_csvs(61)
    files = []
    for name, text in (("g", guest_csv), ("h", host_csv)):
        (tmp_path / f"{name}.csv").write_text(text)
        files.append(ProviderInput(name, f"ds-{name}", tmp_path / f"{name}.csv"))
    exact = HeteroJob(
        HeteroParams.model_validate(HETERO), files, sandbox=default_sandbox(tmp_path),
        job_id="reference", key_bits=1024,
    ).train()[0]  # fmt: skip
    reference = _flat(exact)
    for model in (noisy, plain):
        diffs = _opened_flat(model, net["inputs"]) - reference
        # σ ≈ 22.1 at ε = 0.6 (the weights get 0.8 of it): every coordinate noised, none
        # beyond 6σ.
        assert np.all(np.abs(diffs) < 6 * sigma) and np.all(np.abs(diffs) > 1e-6), diffs
    # Nothing the platform stores holds the requester's secret key or a keyed weight: not
    # its tables and files, and not its stored result opened with its own sealing key (what
    # GET /result serves). Control: the platform-key path's result holds its weights.
    everything = _everything_stored(platform, settings)
    assert not any(x in everything for x in _secrets(job_key))
    held = everything + json.dumps(keyed["result"])
    for w in _opened_flat(noisy, net["inputs"]):
        assert repr(float(w))[:9] not in held
    plain_text = json.dumps(plain)
    assert all(repr(float(w))[:9] in plain_text for w in _opened_flat(plain, net["inputs"]))


def test_hetero_lr_with_a_host_on_an_embedded_node_under_a_requester_key(
    capi: TestClient, creds: dict[str, Any], platform: Platform, job_key: JobKey
) -> None:
    """The host's side runs on its node, which checks every call against the approved key."""
    guest_csv, host_csv, _ = vertical_csvs(63)
    net: dict[str, Any] = join_network(capi, creds, join_data(63), declare=False)
    r = capi.put("/v1/nodes/me", headers=net["bank"], json={"kind": "embedded"})
    assert r.status_code == 200, r.text
    guest = register_pi(capi, net["tel"], guest_csv, "churn labels")["id"]
    held = register_pi(capi, net["bank"], host_csv, "features (node)", path="/v1/nodes/datasets")
    assert held["custody"] == "node"
    host = held["id"]
    for who, ds in (("tel", guest), ("bank", host)):
        active_contract(capi, net["ent"], net[who], net[f"{who}_org"], [ds], PURPOSE)
        declare_key(capi, net[who], ds, "tel")
    net["inputs"] = [guest, host]
    run = _run(capi, net, job_key)
    assert run["done"]["inputs"][1]["custody"] == "node"
    opened = job_key.decrypt(run["result"])
    assert set(opened["weights"]) == {guest, host} and opened["dp_epsilon"] == 0.6
    with platform.session() as s:
        row = s.get(Computation, run["done"]["id"])
        assert row is not None and row.secret_sealed is None and row.secret_key_id is None
    assert _key_events(platform, run["done"]["id"]) == []
