"""Federated learning over two providers' own nodes under the requester's key (issue 15).

Separate processes, as `test_join_party_keys`: the real server (`pdx run`), two
hospitals' PySyft Datasites over HTTP, and a requester with only `sdk/` importable. The
requester asks for `fl.logreg` twice (DP off, then DP on, ε from the policy), each under
a key it generates; its SDK closes every round (decrypts the aggregate, posts the next
global model) and adds the final update itself. Each node holds its organisation's party
key and signs its mask keys; each checks its peer's against the keys its operator pinned.

* The DP-off model matches plaintext FedAvg (`FlJob`, `unsafe-plain`) on the same rows;
  the DP-on model still trains.
* The platform's database, `$PDX_HOME`, its temp directory and a memory dump of the
  server hold no p, q or λ of either key and none of the providers' plaintext updates
  (replayed here from the rows and the posted models, and checked to sum to what the
  requester decrypted). Control: the requester's dump holds p and q.

Sealed models (`pdx_client.flseal`; the requester pins both providers' party keys in
`PDX_TRUSTED_PARTIES`):

* No global model and no standardisation the requester posted is in what the platform
  was sent or relayed, in its database, `$PDX_HOME`, its temp directory or its core dump
  (as IEEE doubles, as JSON text, or in 32-bit fixed point).
* A relay that alters node 0's sealed model, or seals one of its own to node 0's key,
  gets the job failed by node 0's refusal; one that puts a key of its own in node 1's
  slot gets no sealed model at all: the SDK refuses and stops the job at its setup.

On the code before sealing the requester posted its models in the clear (the relayed
messages hold their JSON text) and the nodes trained from whatever the platform sent.
On the code before requester-key FL the server refused the request (422,
`field: job_key`); without a job key a federated job over providers' own nodes is
still refused.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from sandbox._registry import ProviderInput
from sandbox.fl import FlConfig, FlJob
from sandbox.fl_local import local_train, logloss_sum
from sandbox.party_fl import UPDATE_BITS
from sandbox.release import InMemoryPrivacyBudget, ReleaseGate, ReleaseObligations
from tests.helpers.i15_keys import (
    core_dump,
    encoded,
    files_under,
    start_node,
    start_requester,
)
from tests.helpers.net import free_port
from tests.helpers.party_cluster import NODE_EMAIL, NODE_PASSWORD, PartyServer, node_body
from tests.helpers.s13_fl_keys import FEATURES, LABEL, PURPOSE, byte_hits, rows_of
from tests.helpers.s14_fl_seal import sealed_requester_script
from tests.test_api_contracts import active_contract, make_org, measure_csv, register_dataset

assert any(p.endswith("sdk") for p in sys.path)  # tests.helpers.s13_fl_keys's import put it there
from pdx_client.fl import predict  # noqa: E402
from pdx_client.partykeys import PartyKey  # noqa: E402

pytestmark = pytest.mark.slow

ROWS = (300, 260)
PLAIN = {"features": FEATURES, "label": LABEL, "rounds": 5, "local_epochs": 10,
         "early_stopping": False}  # fmt: skip
PRIVATE = {**PLAIN, "rounds": 3, "local_epochs": 5, "feature_bounds": [[60, 200], [18, 95]]}
ATTACKS = ("alter", "substitute_model", "substitute_key")


@pytest.fixture(scope="module")
def scenario(
    tmp_path_factory: pytest.TempPathFactory, shared_party_server: PartyServer
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("fl-party-keys")
    # The server is shared (tests.helpers.party_cluster); the nodes are this module's own:
    # each holds its organisation's party key.
    server, creds = shared_party_server.server, shared_party_server.creds
    nodes = []
    requester: subprocess.Popen[str] | None = None
    texts = [measure_csv(20 + i, n) for i, n in enumerate(ROWS)]
    trust, parties = tmp / "trusted-parties.json", {}
    try:
        api = httpx.Client(base_url=server.url, timeout=300)
        _, ent = make_org(api, creds, "Riverside Health Analytics", "enterprise")
        plain_inputs, private_inputs = [], []
        for i, text in enumerate(texts):
            # Each node signs its mask keys with its organisation's party key and checks its
            # peer's against the trusted-parties file (test_signed_mask_keys).
            party_key = PartyKey.generate()
            pem = party_key.save(tmp / f"party-{i}.pem", passphrase=f"node pass {i}")
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("PDX_NODE_PARTY_KEY", str(pem))
                mp.setenv("PDX_NODE_PARTY_KEY_PASSPHRASE", f"node pass {i}")
                mp.setenv("PDX_NODE_TRUSTED_PARTIES", str(trust))
                node = start_node(free_port(), NODE_EMAIL, NODE_PASSWORD, tmp / f"node-{i}")
            nodes.append(node)
            org, prov = make_org(api, creds, f"Hospital {i} District", "provider")
            r = api.put("/v1/nodes/me", headers=prov, json=node_body(node))
            assert r.status_code == 200, r.text
            pinned = {"algorithm": "ed25519", "public_key": party_key.public_b64}
            r = api.post(f"/v1/market/parties/{org}/keys", headers=prov, json=pinned)
            assert r.status_code in (200, 201), r.text
            parties[org] = [pinned]
            ids = []
            for attribute in ("open", "conditional"):  # no DP; DP with ε = 1 (general-1)
                name, nodes_path = f"Hospital {i} {attribute}", "/v1/nodes/datasets"
                ds = register_dataset(
                    api, prov, text, name, "general-1", path=nodes_path, open_attribute=attribute
                )
                assert ds["custody"] == "node"
                ids.append(ds["id"])
            active_contract(api, ent, prov, org, ids, PURPOSE)
            plain_inputs.append(ids[0])
            private_inputs.append(ids[1])
        trust.write_text(json.dumps({"parties": parties}))
        request = {"operator": "fl.logreg", "inputs": plain_inputs, "params": PLAIN,
                   "purpose": PURPOSE}  # fmt: skip
        # Without a job key, training over providers' own nodes is refused, nothing written.
        r = api.post("/v1/computations", headers=ent, json=request)
        assert r.status_code == 422 and r.json()["field"] == "job_key", r.text
        out = tmp / "requester"
        bodies = [request, {**request, "inputs": private_inputs, "params": PRIVATE}]
        bodies += [{**request, "params": {**PLAIN, "rounds": 2}, "_attack": a} for a in ATTACKS]
        token = ent["Authorization"].removeprefix("Bearer ")
        requester = start_requester(
            out,
            sealed_requester_script(),
            server.url,
            token,
            REQUEST_BODIES=json.dumps(bodies),
            PDX_TRUSTED_PARTIES=str(trust),  # the requester pins both providers' party keys
        )
        assert requester.stdout is not None
        for _ in bodies:
            line = requester.stdout.readline()
            assert line.startswith("ID "), line + requester.stdout.read()[-3000:]
        line = requester.stdout.readline()
        assert line.strip() == "DONE", line + requester.stdout.read()[-3000:]
        facts = json.loads((out / "requester.json").read_text())
        dumps = tmp / "dumps"
        # The server's dump is taken now, after this module's jobs (it serves other modules).
        yield {
            "server": server,
            "server_tmp": shared_party_server.tmp,
            "texts": texts,
            "tmp": tmp,
            "facts": facts,
            "server_core": core_dump(server.proc.pid, dumps / "server"),
            "requester_core": core_dump(requester.pid, dumps / "requester"),
        }
    finally:
        if requester is not None and requester.poll() is None:
            assert requester.stdin is not None
            requester.stdin.close()
            requester.wait(timeout=30)
        for node in nodes:
            node.stop()
        shutil.rmtree(tmp / "dumps", ignore_errors=True)  # core dumps are large


def _accuracy(model: dict[str, Any], texts: list[str]) -> float:
    xs, ys = rows_of(texts)
    return sum(int(p == y) for p, y in zip(predict(model, xs), ys, strict=True)) / len(ys)


def _plain_fedavg(texts: list[str], tmp: Path) -> Any:
    paths = []
    for i, text in enumerate(texts):
        paths.append(tmp / f"ref-{i}.csv")
        paths[-1].write_text(text)
    cfg = FlConfig(features=tuple(FEATURES), label=LABEL, rounds=5, local_epochs=10,
                   early_stopping=False, encrypted=False)  # fmt: skip
    providers = [ProviderInput(f"org-{i}", f"ds-{i}", p) for i, p in enumerate(paths)]
    gate = ReleaseGate(InMemoryPrivacyBudget())
    return FlJob(cfg, providers).run(gate, ReleaseObligations(min_cohort=10)).review()


def test_the_sdk_trains_under_its_key_as_plaintext_fedavg_and_with_dp(
    scenario: dict[str, Any],
) -> None:
    plain, private = scenario["facts"][:2]
    assert plain["verified"] and private["verified"]  # every node key checked against a pin
    ref = _plain_fedavg(scenario["texts"], scenario["tmp"])
    model = plain["model"]
    assert model["decrypted_by"] == "requester" and model["rows"] == sum(ROWS)
    assert model["coef"] == pytest.approx(list(ref.coef), abs=1e-4)
    assert model["intercept"] == pytest.approx(ref.intercept, abs=1e-4)
    acc, ref_acc = _accuracy(model, scenario["texts"]), ref.accuracy(*rows_of(scenario["texts"]))
    assert acc > 0.7 and abs(acc - ref_acc) < 0.01
    dp = private["model"]
    assert dp["dp"]["epsilon"] == 1.0 and dp["rounds_run"] == 3
    assert abs(dp["rows"] - sum(ROWS)) < 200  # N̂: the noisy count only
    assert _accuracy(dp, scenario["texts"]) > 0.65  # still trains


def _updates(text: str, facts: dict[str, Any]) -> list[list[float]]:
    """A provider's plaintext weighted updates of each round, replayed from its rows."""
    xs, ys = rows_of([text])
    std = facts["models"][0]["standardisation"]
    x, y = np.asarray(xs), np.asarray(ys, dtype=np.float64)
    xb = np.hstack([(x - np.asarray(std["mean"])) / np.asarray(std["scale"]), np.ones((len(y), 1))])
    n_total = float(std["n_total"])
    out = []
    for model in facts["models"]:  # what the requester sealed, in order
        w = np.asarray(model["weights"], dtype=np.float64)
        loss, correct = logloss_sum(xb, y, w)
        delta = local_train(xb, y, w, 1.0 / n_total, 0.5, 10) - w
        weight = len(y) / n_total
        out.append([*(weight * delta).tolist(), weight, loss / n_total, correct / n_total])
    return out


def test_no_secret_key_and_no_providers_update_anywhere_on_the_platform(
    scenario: dict[str, Any],
) -> None:
    plain = scenario["facts"][0]
    assert len(plain["models"]) == 5 and all("sealed" in p for p in plain["posts"])
    per_provider = [_updates(t, plain) for t in scenario["texts"]]
    # The replay is right: the providers' fixed-point updates sum to what the requester
    # decrypted (steps 1..4 answered, step 5 the result).
    sums = [*plain["sums"][1:], plain["final_sum"]]
    assert len(sums) == len(per_provider[0]) == 5
    for r, total in enumerate(sums):
        fixed = [[round(v * (1 << UPDATE_BITS)) for v in p[r]] for p in per_provider]
        columns = zip(*fixed, strict=True)
        assert all(abs(sum(c) - t) <= 2 for c, t in zip(columns, total, strict=True))
    patterns = {}
    for k, rounds in enumerate(per_provider):
        for r, vec in enumerate(rounds):
            for i, v in enumerate(vec[:3]):  # the weighted update of each coordinate
                patterns[f"provider {k} round {r} coef {i}: double"] = struct.pack("<d", v)
                patterns[f"provider {k} round {r} coef {i}: text"] = repr(v).encode()
    # Every job key's p, q and λ in every encoding, searched with the updates in one pass.
    keys = {}
    for j, facts in enumerate(scenario["facts"]):
        p, q = int(facts["p"]), int(facts["q"])
        keys |= encoded({f"job {j} p": p, f"job {j} q": q, f"job {j} lambda": (p - 1) * (q - 1)})
    server = scenario["server"]
    platform_files = list(files_under(server.home, scenario["server_tmp"]))
    assert byte_hits(platform_files + [scenario["server_core"]], patterns | keys) == []
    found = byte_hits([scenario["requester_core"]], keys)  # control: the search works
    for j in range(len(scenario["facts"])):
        assert any(h.startswith(f"job {j} p: ") for h in found), found
        assert any(h.startswith(f"job {j} q: ") for h in found), found


def _model_patterns(facts: list[dict[str, Any]]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(patterns for any file, patterns dense enough for a core dump) of every value the
    requester sealed: each global model's weights and the standardisation."""
    dense: dict[str, bytes] = {}
    text: dict[str, bytes] = {}
    for f in facts:
        for step, model in enumerate(f["models"]):
            values = {f"w{i}": v for i, v in enumerate(model["weights"])}
            for name, vs in (model.get("standardisation") or {}).items():
                values |= {
                    f"{name}{i}": v for i, v in enumerate(vs if isinstance(vs, list) else [vs])
                }
            for name, v in values.items():
                if len(repr(float(v))) < 10:  # 0.0, 560.0, ...: too short to mean anything
                    continue
                tag = f"{f['id'][:8]} step {step} {name}"
                dense[f"{tag}: double"] = struct.pack("<d", float(v))
                dense[f"{tag}: text"] = repr(float(v)).encode()
                text[f"{tag}: fixed point"] = str(round(float(v) * (1 << UPDATE_BITS))).encode()
    return {**dense, **text}, dense


def test_the_platform_never_holds_a_global_model_or_the_standardisation(
    scenario: dict[str, Any],
) -> None:
    honest = scenario["facts"][:2]
    anywhere, dense = _model_patterns(honest)
    assert len(dense) >= 2 * (3 * 4 + 4)  # models after the first, and the moments
    # What the requester sent and what the platform relayed to it (the rounds).
    relayed = json.dumps([[f["posts"], f["fetched"], f["result"]] for f in honest]).encode()
    assert [name for name, pat in anywhere.items() if pat in relayed] == []
    server = scenario["server"]
    platform_files = list(files_under(server.home, scenario["server_tmp"]))
    assert byte_hits(platform_files, anywhere) == []
    assert byte_hits([scenario["server_core"]], dense) == []
    # Control: the requester's own process holds them.
    assert byte_hits([scenario["requester_core"]], dense) != []


def test_a_node_refuses_an_altered_or_substituted_model_and_the_sdk_a_substituted_key(
    scenario: dict[str, Any],
) -> None:
    by_attack = {f["attack"]: f for f in scenario["facts"][2:]}
    assert set(by_attack) == set(ATTACKS)
    for attack in ("alter", "substitute_model"):
        f = by_attack[attack]
        assert f["state"] == "failed" and f["refused"] is None, f["error"]
        assert "failed authentication" in json.dumps(f["error"]), (attack, f["error"])
        assert len(f["posts"]) == 1  # the job ended at node 0's refusal of round 0
    f = by_attack["substitute_key"]
    assert f["refused"] is not None and "does not carry" in f["refused"], f["refused"]
    assert f["posts"] == [{"stop": True}]  # nothing sealed to the platform's key
    assert f["state"] == "failed" and "setup" in json.dumps(f["error"]), f["error"]
