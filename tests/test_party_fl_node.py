"""The node side of `fl.logreg` under a requester key: what a provider's Datasite refuses.

`node_call` is what a provider's Datasite runs for each call; these tests call it as the
node would, with the binding its code request approved. On the code before this change
the node ran `fl.logreg` only under the platform's CKKS key (no requester key, no masks).
"""

from __future__ import annotations

import hashlib
import sys
import uuid
from typing import Any

import phe  # type: ignore[import-untyped]
import pytest

from sandbox.coordinator import Coordinator, Envelope
from sandbox.node_side import decode_outcome, node_call
from sandbox.paillier import PackedVector
from sandbox.party_fl import MOMENT_BITS
from sandbox.party_stats import PartyJob
from tests.helpers.s13_fl_keys import FEATURES, LABEL

assert any(p.endswith("sdk") for p in sys.path)  # tests.helpers.s13_fl_keys's import put it there
from pdx_client.jobkeys import JobKey  # noqa: E402

CSVS = [
    "patient_ref,systolic_bp,age,readmitted\n"
    + "".join(f"R{k}{i},{100 + (i * 7 + k) % 60},{20 + i % 50},{i % 2}\n" for i in range(30))
    for k in (0, 1)
]
INIT = {"cmd": "init", "step": "fl.start", "features": FEATURES, "label": LABEL, "rounds": 2,
        "epochs": 3, "lr": 0.5, "C": 1.0, "clip_norm": 1.0, "count_share": 0.02}  # fmt: skip


@pytest.fixture(scope="module")
def key() -> JobKey:
    return JobKey.generate()


class Node:
    """One provider's node for one job: its approved binding and its session."""

    def __init__(self, approved: PartyJob, index: int) -> None:
        self.index = index
        self.session = uuid.uuid4().hex
        self.binding = {
            "job_id": approved.job_id,
            "dataset_id": f"ds-{index}",
            "sha256": hashlib.sha256(CSVS[index].encode()).hexdigest(),
            "operators": ["stats.variance", "fl.logreg"],
            "party": approved.binding(),
        }

    def call(self, cmd: str, sent: PartyJob | None, params: dict[str, Any], peers: Any) -> Any:
        body = dict(params)
        if sent is not None:
            body |= {"job": sent.public.params(),
                     "party": {**sent.binding(), "index": self.index, "peers": peers}}  # fmt: skip
        call = {"cmd": cmd, "operator": "fl.logreg", "session": self.session, "params": body,
                "blobs": {}}  # fmt: skip
        return decode_outcome(node_call(CSVS[self.index], self.binding, call), "fl.logreg")


def _open(key: JobKey, party: PartyJob, envelopes: list[bytes]) -> list[int]:
    coordinator = Coordinator(party.public)
    for i, env in enumerate(envelopes):
        coordinator.submit(f"p{i}", env)
    vec = PackedVector.from_bytes(Envelope.from_bytes(coordinator.aggregate()).payload)
    doc = {"key_fingerprint": party.fingerprint, "length": vec.length, "addends": vec.addends,
           "packing": {"slot_bits": vec.packing.slot_bits,
                       "headroom_bits": vec.packing.headroom_bits},
           "ciphertexts": [format(c, "x") for c in vec.ciphertexts]}  # fmt: skip
    return key.open_vector(doc)


def test_fl_nodes_mask_each_step_once_and_the_sum_is_exact(key: JobKey) -> None:
    party = PartyJob(uuid.uuid4().hex, key.n, providers=2, min_cohort=10, dp=None)
    nodes = [Node(party, i) for i in (0, 1)]
    try:
        peers = [{"index": n.index, "public": n.call("keys", party, {}, []).unwrap().hex()}
                 for n in nodes]  # fmt: skip
        setup = [n.call("call", party, INIT, peers).unwrap() for n in nodes]
        total = _open(key, party, setup)
        bp = [sum(100 + (i * 7 + k) % 60 for i in range(30)) for k in (0, 1)]
        assert total[0] == 60 and total[1] == sum(bp) << MOMENT_BITS
        alone = _open(key, party, setup[:1])
        assert alone[0] != 30 and alone[1] != bp[0] << MOMENT_BITS  # masked
        std = {"mean": [130.0, 45.0], "scale": [17.0, 14.0], "n_total": 60}
        first = {"cmd": "round", "round": 0, "weights": [0.0, 0.0, 0.0], "standardisation": std}
        assert all(n.call("call", party, first, peers).ok for n in nodes)
        # The same step again (say with other weights): refused, so no two envelopes share
        # a mask and the difference of two updates never shows.
        again = nodes[0].call("call", party, {**first, "weights": [1.0, 0.0, 0.0]}, peers)
        assert not again.ok and "already sent" in again.detail
    finally:
        for n in nodes:
            n.call("close", None, {}, [])


def test_an_fl_node_runs_no_round_beyond_those_declared(key: JobKey) -> None:
    """Under DP the node's noise is planned for the declared rounds: no more are run."""
    party = PartyJob(uuid.uuid4().hex, key.n, providers=2, min_cohort=10, dp=None)
    node = Node(party, 0)
    try:
        assert node.call("call", party, INIT, []).ok
        std = {"mean": [130.0, 45.0], "scale": [17.0, 14.0], "n_total": 60}
        beyond = {"cmd": "round", "round": 2, "weights": [0.0] * 3, "standardisation": std}
        outcome = node.call("call", party, beyond, [])
        assert not outcome.ok and "declared rounds" in outcome.detail
    finally:
        node.call("close", None, {}, [])


def test_the_fl_node_refuses_a_key_epsilon_or_call_it_did_not_approve(key: JobKey) -> None:
    job = uuid.uuid4().hex
    approved = PartyJob(job, key.n, providers=2, min_cohort=10, dp={"epsilon": 1.0})
    other_n = int(phe.generate_paillier_keypair(n_length=1024)[0].n)
    node = Node(approved, 0)
    try:
        for sent in (
            PartyJob(job, other_n, providers=2, min_cohort=10, dp={"epsilon": 1.0}),
            PartyJob(job, key.n, providers=2, min_cohort=10, dp={"epsilon": 9.0}),
            PartyJob(job, key.n, providers=2, min_cohort=10, dp=None),
            PartyJob(job, key.n, providers=2, min_cohort=1, dp={"epsilon": 1.0}),
        ):
            for cmd, params in (("keys", {}), ("call", INIT)):
                outcome = node.call(cmd, sent, params, [])
                assert not outcome.ok and outcome.code == "node-binding-mismatch", outcome
        # The platform-key path (CKKS, no party) on a node approved for the requester's key.
        outcome = node.call("call", None, {**INIT, "job": {"scheme": "ckks"}}, [])
        assert not outcome.ok and outcome.code == "node-binding-mismatch", outcome
    finally:
        node.call("close", None, {}, [])
