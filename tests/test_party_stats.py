"""The node side of a requester-key job: what the Datasite function refuses; masks that cancel.

`node_call` is exactly what a provider's Datasite runs for each call (`sandbox.syft_functions`);
these tests call it as the node would, with the binding its code request approved. On the
code before this change the node had no binding for the job key and ran whatever key,
ε and provider count the platform's call carried.
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import phe  # type: ignore[import-untyped]
import pytest

from sandbox.coordinator import Coordinator
from sandbox.masks import apply_masks
from sandbox.node_side import decode_outcome, node_call
from sandbox.party_stats import PartyJob, encrypted_result, mask_blobs, mask_public
from sandbox.stats import StatsQuery

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))
from pdx_client.jobkeys import JobKey  # noqa: E402

CSV = "patient_ref,age\n" + "".join(f"R{i},{20 + i % 50}\n" for i in range(40))


@pytest.fixture(scope="module")
def key() -> JobKey:
    return JobKey.generate()


def _call(
    party: PartyJob, approved: PartyJob, cmd: str, index: int, peers: list[dict[str, Any]]
) -> Any:
    dataset = f"ds-{index}"
    binding = {
        "job_id": approved.job_id,
        "dataset_id": dataset,
        "sha256": hashlib.sha256(CSV.encode()).hexdigest(),
        "operators": ["stats.sum"],
        "party": approved.binding(),
    }
    query = StatsQuery.from_params({"op": "stats.sum", "columns": ["age"], "scheme": "paillier"})
    params = {
        "query": query.to_params(),
        "job": party.public.params(),
        "party": {**party.binding(), "index": index, "peers": peers},
    }
    call = {"cmd": cmd, "operator": "stats.sum", "session": "", "params": params, "blobs": {}}
    return decode_outcome(node_call(CSV, binding, call), "stats.sum")


def test_two_nodes_mask_their_partials_and_the_sum_is_exact(key: JobKey) -> None:
    job = uuid.uuid4().hex
    party = PartyJob(job, key.n, providers=2, min_cohort=10, dp=None)
    peers = [
        {"index": i, "public": _call(party, party, "keys", i, []).unwrap().hex()} for i in (0, 1)
    ]
    envelopes = [_call(party, party, "run", i, peers).unwrap() for i in (0, 1)]
    coordinator = Coordinator(party.public)
    for i, env in enumerate(envelopes):
        coordinator.submit(f"p{i}", env)
    query = StatsQuery.from_params({"op": "stats.sum", "columns": ["age"], "scheme": "paillier"})
    doc = encrypted_result(query, party, coordinator.aggregate())
    group = key.decrypt(doc)["groups"][0]
    one = sum(20 + i % 50 for i in range(40))
    assert group["exact"]["sum(age)"] == str(2 * one) and group["rows"] == 80
    # One envelope alone, decrypted with the requester's key, is masked: not the partial.
    single = Coordinator(party.public)
    single.submit("p0", envelopes[0])
    doc0 = encrypted_result(query, party, single.aggregate())
    raw = key._open(doc0)
    assert raw[0] != 40 and raw[2] != one * 10**6


def test_the_node_refuses_a_key_epsilon_or_provider_count_it_did_not_approve(key: JobKey) -> None:
    job = uuid.uuid4().hex
    approved = PartyJob(job, key.n, providers=3, min_cohort=10, dp={"epsilon": 1.0})
    other_n = int(phe.generate_paillier_keypair(n_length=1024)[0].n)
    for sent in (
        PartyJob(job, other_n, providers=3, min_cohort=10, dp={"epsilon": 1.0}),  # platform key
        PartyJob(job, key.n, providers=3, min_cohort=10, dp={"epsilon": 9.0}),  # larger ε
        PartyJob(job, key.n, providers=6, min_cohort=10, dp={"epsilon": 1.0}),  # smaller shares
        PartyJob(job, key.n, providers=3, min_cohort=1, dp={"epsilon": 1.0}),  # no cohort
    ):
        for cmd in ("keys", "run"):
            outcome = _call(sent, approved, cmd, 0, [])
            assert not outcome.ok and outcome.code == "node-binding-mismatch", outcome
    assert _call(approved, approved, "keys", 0, []).ok


def test_pairwise_masks_cancel_exactly() -> None:
    job, fp = uuid.uuid4().hex, "sha256:" + "a" * 64
    publics = [mask_public(job, f"d{i}").hex() for i in range(4)]
    peers = [{"index": i, "public": p} for i, p in enumerate(publics)]
    total = [0] * 7
    for i in range(4):
        blobs = mask_blobs(job, f"d{i}", {"index": i, "fingerprint": fp, "peers": peers})
        seeds = {int(k): bytes.fromhex(v) for k, v in json.loads(blobs["mask_seeds"]).items()}
        masked = apply_masks([i] * 7, i, seeds)
        assert masked != [i] * 7
        total = [a + b for a, b in zip(total, masked, strict=True)]
    assert total == [0 + 1 + 2 + 3] * 7
