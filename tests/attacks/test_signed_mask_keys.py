"""A platform that substitutes a node's relayed mask key is refused by the other node.

Issue 15: under a requester-held job key the providers' nodes agree pairwise X25519 masks
over public keys the platform relays. Two providers' own PySyft Datasites run as separate
processes (`tests.helpers.i15_keys`), each holding its organisation's party key
(`PDX_NODE_PARTY_KEY`, saved by the SDK's `PartyKey`) and a trusted-parties file with the
keys both organisations registered (`PDX_NODE_TRUSTED_PARTIES`). The platform is the real
app over the real database; the attacks make it malicious where it relays the keys
(`exchange.computations.job_keys.collect_mask_keys`, the platform's own code):

* `swap`: node 1's X25519 key is replaced with one the platform made, so the platform
  could derive node 0's seed with "node 1" and strip node 0's masks;
* `resign`: the same, and the platform signs the substitute with a key of its own in
  place of node 1's signature.

Node 0 refuses before it derives a seed: the job fails with `mask-key-unverified` naming
provider 1, and no result exists. On the code before this change the nodes relayed bare
keys and used whatever came back, so both attacks ended `released` (the test fails
there), and the honest run had no signature to show.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from crypto.agreement import agreement_keypair
from crypto.suites.signature import generate
from exchange.computations import job_keys
from gateway.app import create_app
from gateway.platform import build_platform, initialise
from gateway.settings import Settings
from tests.attacks.test_party_held_keys import PURPOSE, _csv, _fixed_sum
from tests.helpers.i15_keys import NodeProcess, start_node
from tests.helpers.net import free_port
from tests.helpers.party_cluster import NODE_EMAIL, NODE_PASSWORD, node_body
from tests.test_api_computations import wait_for
from tests.test_api_contracts import active_contract, make_org, register_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk"))
from pdx_client.jobkeys import JobKey  # noqa: E402
from pdx_client.partykeys import PartyKey  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two provider nodes, each with its organisation's party key (made by the SDK)."""
    tmp = tmp_path_factory.mktemp("signed-masks")
    trust = tmp / "trusted-parties.json"
    keys, procs = [], []
    try:
        for i in range(2):
            key = PartyKey.generate()
            pem = key.save(tmp / f"party-{i}.pem", passphrase=f"node pass {i}")
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("PDX_NODE_PARTY_KEY", str(pem))
                mp.setenv("PDX_NODE_PARTY_KEY_PASSPHRASE", f"node pass {i}")
                mp.setenv("PDX_NODE_TRUSTED_PARTIES", str(trust))
                procs.append(start_node(free_port(), NODE_EMAIL, NODE_PASSWORD, tmp / f"n{i}"))
            keys.append(key)
        yield {"keys": keys, "procs": procs, "trust": trust}
    finally:
        for proc in procs:
            proc.stop()


def _world(settings: Settings, nodes: dict[str, Any]) -> Iterator[dict[str, Any]]:
    allowed = settings.replace(
        node_allow_networks=("127.0.0.0/8",),
        node_read_timeout_ms=120_000,
        node_probe_timeout_ms=120_000,
        node_connect_timeout_ms=10_000,
    )
    platform = build_platform(allowed)
    creds = initialise(platform)
    assert creds is not None
    with TestClient(create_app(platform)) as api:
        _, ent = make_org(api, creds, "Riverside Health Analytics", "enterprise")
        texts, datasets, parties = [], [], {}
        procs: list[NodeProcess] = nodes["procs"]
        for i, name in enumerate(("Northgate", "Lakeside")):
            org, prov = make_org(api, creds, f"{name} District Hospital", "provider")
            r = api.put("/v1/nodes/me", headers=prov, json=node_body(procs[i]))
            assert r.status_code == 200, r.text
            key: PartyKey = nodes["keys"][i]
            r = api.post(
                f"/v1/market/parties/{org}/keys",
                headers=prov,
                json={"algorithm": "ed25519", "public_key": key.public_b64},
            )
            assert r.status_code in (200, 201), r.text
            registered = api.get(f"/v1/market/parties/{org}", headers=prov).json()["keys"]
            assert [k["id"] for k in registered] == [key.key_id]
            # The node's operator pins each organisation's registered key.
            parties[org] = [
                {"algorithm": k["algorithm"], "public_key": k["public_key"]} for k in registered
            ]
            text = _csv(i + 1, 40)
            ds = register_dataset(
                api,
                prov,
                text,
                f"{name} ward amounts",
                "general-1",
                path="/v1/nodes/datasets",
                open_attribute="open",
            )
            assert ds["custody"] == "node"
            active_contract(api, ent, prov, org, [ds["id"]], PURPOSE)
            texts.append(text)
            datasets.append(ds["id"])
        nodes["trust"].write_text(json.dumps({"parties": parties}))
        yield {"api": api, "ent": ent, "texts": texts, "datasets": datasets, "orgs": list(parties)}
    platform.engine.dispose()


@pytest.fixture
def world(settings: Settings, nodes: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from _world(settings, nodes)


def _run(w: dict[str, Any], key: JobKey) -> dict[str, Any]:
    api, ent = w["api"], w["ent"]
    request = {
        "operator": "stats.sum",
        "inputs": w["datasets"],
        "params": {"columns": ["amount"]},
        "purpose": PURPOSE,
        "job_key": key.public(),
    }
    r = api.post("/v1/computations", headers=ent, json=request)
    assert r.status_code == 201, r.text
    return wait_for(api, ent, r.json()["id"], "released", "failed", "rejected", timeout=600)


def _relay(monkeypatch: pytest.MonkeyPatch, change: Callable[[list[Any]], None]) -> list[Any]:
    """Make the platform change the keys it relays (`change` edits them in place)."""
    real = job_keys.collect_mask_keys
    seen: list[Any] = []

    def relay(*args: Any, **kwargs: Any) -> Any:
        keys = real(*args, **kwargs)
        seen.append([dict(k) if isinstance(k, dict) else k for k in keys])
        change(keys)
        return keys

    monkeypatch.setattr(job_keys, "collect_mask_keys", relay)
    return seen


def test_honest_nodes_sign_their_mask_keys_and_the_sum_decrypts(
    world: dict[str, Any], nodes: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _relay(monkeypatch, lambda keys: None)
    key = JobKey.generate()
    state = _run(world, key)
    assert state["state"] == "released", state
    result = world["api"].get(f"/v1/computations/{state['id']}/result", headers=world["ent"])
    assert result.status_code == 200, result.text
    opened = key.decrypt(result.json())
    expected = sum(_fixed_sum(t) for t in world["texts"])
    assert Decimal(opened["groups"][0]["exact"]["sum(amount)"]) * 10**6 == expected
    # Each node's key was relayed with its organisation's signature (the registered key).
    (relayed,) = seen
    for entry, org, party_key in zip(relayed, world["orgs"], nodes["keys"], strict=True):
        assert isinstance(entry, dict) and entry["org_id"] == org, entry
        assert entry["key_id"] == party_key.key_id and entry["signature"], entry


def _swap(keys: list[Any]) -> None:
    _, fake = agreement_keypair()  # the platform's own X25519 key for "node 1"
    if isinstance(keys[1], dict):
        keys[1]["public"] = fake.hex()
    else:  # the code before signed mask keys relayed bare hex keys
        keys[1] = fake.hex()


def _resign(keys: list[Any]) -> None:
    _swap(keys)
    if isinstance(keys[1], dict):  # and vouch for it with a key of the platform's own
        from sandbox.mask_signing import party_key_id

        own = generate("ed25519")
        keys[1]["key_id"] = party_key_id("ed25519", own.public_bytes())
        keys[1]["signature"] = base64.b64encode(own.sign(keys[1]["public"].encode())).decode()


@pytest.mark.parametrize("attack", [_swap, _resign], ids=["swap", "resign"])
def test_a_platform_that_substitutes_a_mask_key_is_refused(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, attack: Callable[[list[Any]], None]
) -> None:
    _relay(monkeypatch, attack)
    state = _run(world, JobKey.generate())
    assert state["state"] == "failed", state
    assert state["error"]["code"] == "mask-key-unverified", state["error"]
    assert "provider 1" in state["error"]["detail"], state["error"]  # node 0 refused
    r = world["api"].get(f"/v1/computations/{state['id']}/result", headers=world["ent"])
    assert r.status_code != 200 and "ciphertexts" not in r.text, r.text
