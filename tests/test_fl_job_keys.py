"""`fl.logreg` under the requester's own key, through the real app (issue 15).

The SDK generates the job key, requests the training, closes each round (decrypts the
encrypted aggregate, posts the next global model) and adds the final update itself. On
the code before this change the server refused `job_key` for `fl.logreg` (422).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from exchange.computations.fl_rounds import ComputationFlRound
from exchange.computations.job_keys import JOB_KEY_PARAMS
from gateway.platform import Platform
from sandbox.operators import OPERATORS
from tests.helpers.api import assert_problem
from tests.helpers.s13_fl_keys import FEATURES, LABEL, PURPOSE, fl_network, rows_of
from tests.test_api_computations import wait_for

assert any(p.endswith("sdk") for p in sys.path)  # tests.helpers.s13_fl_keys's import put it there
from pdx_client.fl import FlTrainer, predict  # noqa: E402
from pdx_client.jobkeys import JobKey, takes_job_key  # noqa: E402

PARAMS = {"features": FEATURES, "label": LABEL, "rounds": 6, "local_epochs": 5}


@pytest.fixture(scope="module")
def job_key() -> JobKey:
    return JobKey.generate()


def test_the_sdk_and_the_server_agree_on_every_operator_taking_a_job_key() -> None:
    served = {op: issubclass(spec.params, JOB_KEY_PARAMS) for op, spec in OPERATORS.items()}
    assert {op: takes_job_key(op) for op in OPERATORS} == served
    assert served["fl.logreg"] and served["fl.hetero_logreg"]


def test_fedavg_under_the_requesters_key_equals_the_platform_key_model(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    net = fl_network(capi, creds)
    ent = net["sdk"]
    # Reference: the same FedAvg under the platform's key (platform custody, CKKS).
    ref = ent.compute("fl.logreg", net["inputs"], {**PARAMS, "early_stopping": False}, PURPOSE)
    key = JobKey.generate()
    got = ent.compute(
        "fl.logreg", net["inputs"], {**PARAMS, "early_stopping": False}, PURPOSE, job_key=key
    )
    model = got.output
    assert model["decrypted_by"] == "requester" and model["rows"] == 180
    assert model["rounds_run"] == 6 and len(model["rounds"]) == 5
    assert model["coef"] == pytest.approx(ref.output["coef"], abs=1e-4)
    assert model["intercept"] == pytest.approx(ref.output["intercept"], abs=1e-4)
    xs, ys = rows_of([h["text"] for h in net["hospitals"]])
    acc = sum(int(p == y) for p, y in zip(predict(model, xs), ys, strict=True)) / len(ys)
    assert acc > 0.7
    with platform.session() as s:
        assert s.scalars(select(ComputationFlRound)).all() == []  # no round left behind
        body = capi.get(f"/v1/computations/{got.computation_id}", headers=net["ent"]).json()
    events = [t["event"] for t in body["transitions"]]
    assert events.count("fl_round_posted") == 6  # the setup and five models, each recorded
    assert body["security_model"]["threat_model"]["parties"][1]["role"] == "platform (coordinator)"


def test_only_the_requester_closes_a_round_and_a_missed_deadline_fails_the_job(
    capi: TestClient, creds: dict[str, Any], platform: Platform, job_key: JobKey
) -> None:
    net = fl_network(capi, creds, rows=(30, 30))
    platform.compute.fl_round_timeout_s = 3.0
    body = {"operator": "fl.logreg", "inputs": net["inputs"], "params": PARAMS,
            "purpose": PURPOSE, "job_key": job_key.public()}  # fmt: skip
    r = capi.post("/v1/computations", headers=net["ent"], json=body)
    assert r.status_code == 201, r.text
    comp_id = r.json()["id"]
    deadline = time.monotonic() + 60
    while True:
        r = capi.get(f"/v1/computations/{comp_id}/fl-round", headers=net["ent"])
        if r.status_code == 200:
            break
        assert r.status_code == 409 and time.monotonic() < deadline, r.text
        time.sleep(0.1)
    step = r.json()
    assert step["step"] == 0 and not step["posted"]
    # A provider of the job sees the computation, but not its rounds.
    provider = net["hospitals"][0]["h"]
    assert_problem(capi.get(f"/v1/computations/{comp_id}/fl-round", headers=provider), 403)
    reply = FlTrainer(job_key).reply(step["aggregate"])
    r = capi.post(f"/v1/computations/{comp_id}/fl-round/0", headers=provider, json=reply)
    assert_problem(r, 403)
    r = capi.post(f"/v1/computations/{comp_id}/fl-round/3", headers=net["ent"], json=reply)
    assert_problem(r, 409)
    # Nobody answers step 0: the job fails at its deadline and keeps no round.
    done = wait_for(capi, net["ent"], comp_id, "released", "failed", "rejected")
    assert done["state"] == "failed" and done["error"]["code"] == "fl-round-timeout"
    with platform.session() as s:
        assert s.scalars(select(ComputationFlRound)).all() == []
    assert_problem(capi.get(f"/v1/computations/{comp_id}/fl-round", headers=net["ent"]), 409)
