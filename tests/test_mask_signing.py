"""The node side of signed mask keys: what a node holding its party key refuses to mask with.

Each call is exactly what a provider's Datasite runs (`sandbox.node_side.node_call`, as in
tests/test_party_stats.py); a node's identity is its environment (`PDX_NODE_PARTY_KEY`,
`PDX_NODE_TRUSTED_PARTIES`), switched here between "node 0" (organisation A) and "node 1"
(organisation B). The platform's part is `sandbox.mask_signing.relayed_key` plus whatever
edit the attack makes to the relayed list. On the code before this change a node signed
nothing and checked nothing: each refusal below was a masked partial under keys the
platform chose, and the stripped list (only the node itself) an unmasked one.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.mask_signing import relayed_key
from sandbox.party_stats import PartyJob
from tests.test_party_stats import _call

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))
from pdx_client.jobkeys import JobKey  # noqa: E402
from pdx_client.partykeys import PartyKey  # noqa: E402

ORGS = ("org-a", "org-b")


@pytest.fixture(scope="module")
def key() -> JobKey:
    return JobKey.generate()


@pytest.fixture
def identities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """`be(i)` makes this process node i (its party key, the shared trusted-parties file)."""
    keys = [PartyKey.generate() for _ in ORGS]
    pems = [k.save(tmp_path / f"{org}.pem") for k, org in zip(keys, ORGS, strict=True)]
    trust = tmp_path / "trusted.json"
    parties = {
        org: [{"algorithm": "ed25519", "public_key": k.public_b64}]
        for org, k in zip(ORGS, keys, strict=True)
    }
    trust.write_text(json.dumps({"parties": parties}))
    monkeypatch.setenv("PDX_NODE_TRUSTED_PARTIES", str(trust))

    def be(i: int) -> None:
        monkeypatch.setenv("PDX_NODE_PARTY_KEY", str(pems[i]))

    return be


def _entry(party: PartyJob, be: Callable[[int], None], i: int, org: str | None = None) -> Any:
    be(i)
    answer = _call(party, party, "keys", i, []).unwrap()
    return {**relayed_key(answer, org or ORGS[i], f"ds-{i}"), "index": i}


def test_node_masks_with_a_peer_key_its_organisation_signed(
    key: JobKey, identities: Callable[[int], None]
) -> None:
    party = PartyJob(uuid.uuid4().hex, key.n, providers=2, min_cohort=10, dp=None)
    peers = [_entry(party, identities, 1), _entry(party, identities, 0)]
    assert all(p["signature"] for p in peers)
    outcome = _call(party, party, "run", 0, peers)  # node 0 (the last identity set)
    assert outcome.ok, outcome


def _unsigned(party: PartyJob, be: Callable[[int], None], peers: list[Any]) -> list[Any]:
    entry = {k: v for k, v in peers[1].items() if k not in ("key_id", "signature", "algorithm")}
    return [peers[0], entry]


def _replayed(party: PartyJob, be: Callable[[int], None], peers: list[Any]) -> list[Any]:
    other = PartyJob(uuid.uuid4().hex, party.n, providers=2, min_cohort=10, dp=None)
    return [peers[0], _entry(other, be, 1)]  # node 1's signed key of another job


def _other_org(party: PartyJob, be: Callable[[int], None], peers: list[Any]) -> list[Any]:
    return [peers[0], {**peers[1], "org_id": "org-c", "dataset_id": "ds-c"}]


def _stripped(party: PartyJob, be: Callable[[int], None], peers: list[Any]) -> list[Any]:
    return [peers[0]]  # no peer: no mask at all


def _own_swapped(party: PartyJob, be: Callable[[int], None], peers: list[Any]) -> list[Any]:
    return [{**peers[0], "public": peers[1]["public"]}, peers[1]]


@pytest.mark.parametrize(
    "attack",
    [_unsigned, _replayed, _other_org, _stripped, _own_swapped],
    ids=[
        "unsigned",
        "replayed-from-another-job",
        "claimed-for-another-org",
        "stripped",
        "own-key-swapped",
    ],
)
def test_node_refuses_relayed_keys_its_pinned_keys_do_not_vouch_for(
    key: JobKey,
    identities: Callable[[int], None],
    attack: Callable[[PartyJob, Callable[[int], None], list[Any]], list[Any]],
) -> None:
    party = PartyJob(uuid.uuid4().hex, key.n, providers=2, min_cohort=10, dp=None)
    honest = [_entry(party, identities, 0), _entry(party, identities, 1)]
    peers = attack(party, identities, honest)
    identities(0)
    outcome = _call(party, party, "run", 0, peers)
    assert not outcome.ok and outcome.code == "mask-key-unverified", outcome
