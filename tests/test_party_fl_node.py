"""The node side of `fl.logreg` under a requester key: what a provider's Datasite refuses.

`node_call` is what a provider's Datasite runs for each call; these tests call it as the
node would, with the binding its code request approved. On the code before this change
the node ran `fl.logreg` only under the platform's CKKS key (no requester key, no masks).

Sealed models (`pdx_client.flseal`): the requester seals each global model for each node;
a node opens only that, and refuses a model in the clear, an altered or replayed one, one
sealed for another node, and one the platform seals under a key and challenge of its own.
Before sealing, a node trained from whatever weights the platform put in the call (the
`round` command took `weights` in the clear), so the refusal tests fail there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import uuid
import warnings
from typing import Any

import numpy as np
import phe  # type: ignore[import-untyped]
import pytest

from crypto.relay import seal_relay
from sandbox.coordinator import Coordinator, Envelope
from sandbox.fl_local import local_train
from sandbox.node_side import decode_outcome, node_call
from sandbox.paillier import PackedVector
from sandbox.party_fl import MOMENT_BITS, UPDATE_BITS, model_aad
from sandbox.party_stats import PartyJob
from tests.helpers.s13_fl_keys import FEATURES, LABEL

assert any(p.endswith("sdk") for p in sys.path)  # tests.helpers.s13_fl_keys's import put it there
from pdx_client.flseal import Sealer, UnverifiedNodeKeys, model_key  # noqa: E402
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
                     "party": {**sent.binding(), "index": self.index, "peers": peers,
                               "seal": True}}  # fmt: skip
        call = {"cmd": cmd, "operator": "fl.logreg", "session": self.session, "params": body,
                "blobs": {}}  # fmt: skip
        return decode_outcome(node_call(CSVS[self.index], self.binding, call), "fl.logreg")


def _doc(party: PartyJob, envelopes: list[bytes], peers: Any = ()) -> dict[str, Any]:
    """The round document the platform hands the requester (as `PartyFlJob._document`)."""
    coordinator = Coordinator(party.public)
    for i, env in enumerate(envelopes):
        coordinator.submit(f"p{i}", env)
    added = Envelope.from_bytes(coordinator.aggregate())
    vec = PackedVector.from_bytes(added.payload)
    return {"key_fingerprint": party.fingerprint, "length": vec.length, "addends": vec.addends,
            "packing": {"slot_bits": vec.packing.slot_bits,
                        "headroom_bits": vec.packing.headroom_bits},
            "ciphertexts": [format(c, "x") for c in vec.ciphertexts], "layout": added.layout,
            "seal": {"job_id": party.job_id, "nodes": list(peers)}}  # fmt: skip


def _open(key: JobKey, party: PartyJob, envelopes: list[bytes]) -> list[int]:
    return key.open_vector(_doc(party, envelopes))


def _sealer(key: JobKey, party: PartyJob, setup: list[bytes], peers: Any) -> Sealer:
    doc = _doc(party, setup, peers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedNodeKeys)  # no pinned keys here
        return Sealer(key, doc, key.open_vector(doc), None, party.job_id)


def _round(sealed: dict[str, Any], r: int, index: int) -> dict[str, Any]:
    """Node `index`'s round-r command, as `PartyFlJob.run` relays it."""
    model = {"requester": sealed["requester_key"], "model": sealed["nodes"][index]}
    return {"cmd": "round", "round": r, "sealed": model}


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
        sealer = _sealer(key, party, setup, peers)
        first = sealer.seal(0, {"weights": [0.0, 0.0, 0.0], "standardisation": std}, {})
        assert all(n.call("call", party, _round(first, 0, n.index), peers).ok for n in nodes)
        # The same step again (say with other weights): refused, so no two envelopes share
        # a mask and the difference of two updates never shows.
        other = sealer.seal(0, {"weights": [1.0, 0.0, 0.0], "standardisation": std}, {})
        again = nodes[0].call("call", party, _round(other, 0, 0), peers)
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
        beyond = {"cmd": "round", "round": 2, "sealed": {"requester": "00" * 32, "model": ""}}
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


def _xb(index: int, std: dict[str, Any]) -> tuple[Any, Any]:
    rows = [line.split(",") for line in CSVS[index].splitlines()[1:]]
    x = np.asarray([[float(r[1]), float(r[2])] for r in rows])
    y = np.asarray([float(r[3]) for r in rows])
    xb = np.hstack([(x - np.asarray(std["mean"])) / np.asarray(std["scale"]), np.ones((30, 1))])
    return xb, y


class _Job:
    """Two nodes set up for one job (sessions open), and the requester's sealer for them."""

    def __init__(self, key: JobKey) -> None:
        self.party = PartyJob(uuid.uuid4().hex, key.n, providers=2, min_cohort=10, dp=None)
        self.nodes = [Node(self.party, i) for i in (0, 1)]
        self.peers = [
            {"index": n.index, "public": n.call("keys", self.party, {}, []).unwrap().hex()}
            for n in self.nodes
        ]
        self.setup = [n.call("call", self.party, INIT, self.peers).unwrap() for n in self.nodes]
        self.sealer = _sealer(key, self.party, self.setup, self.peers)

    def call(self, index: int, command: dict[str, Any]) -> Any:
        return self.nodes[index].call("call", self.party, command, self.peers)

    def close(self) -> None:
        for n in self.nodes:
            n.call("close", None, {}, [])


STD = {"mean": [130.0, 45.0], "scale": [17.0, 14.0], "n_total": 60}
W0 = [0.25, -0.5, 0.125]


def _platform_sealed(job: _Job) -> dict[str, Any]:
    """The platform's own model for node 0, sealed to node 0's relayed (public) key under an
    ephemeral key of the platform's and the best challenge it can guess."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding as E
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat
    from cryptography.hazmat.primitives.serialization import PublicFormat as PF

    party = job.party
    fake = X25519PrivateKey.generate()
    raw = fake.private_bytes(E.Raw, PrivateFormat.Raw, NoEncryption())
    key = model_key(raw, bytes.fromhex(job.peers[0]["public"]), bytes(32),
                    f"{party.job_id}:{party.fingerprint}:0".encode())  # fmt: skip
    body = json.dumps({"weights": [9.0, 9.0, 9.0], "standardisation": STD}).encode()
    blob = seal_relay(key, 0, model_aad(party.job_id, 0, 0), body)
    public = fake.public_key().public_bytes(E.Raw, PF.Raw).hex()
    sealed = {"requester": public, "model": base64.b64encode(blob).decode()}
    return {"cmd": "round", "round": 0, "sealed": sealed}


def _attacks(sealed: dict[str, Any], job: _Job) -> dict[str, tuple[dict[str, Any], str]]:
    blob = bytearray(base64.b64decode(sealed["nodes"][0]))
    blob[5] ^= 1
    altered = {**sealed, "nodes": [base64.b64encode(bytes(blob)).decode(), sealed["nodes"][1]]}
    swapped = {**sealed, "nodes": [sealed["nodes"][1], sealed["nodes"][0]]}
    return {
        "the old round command, the model in the clear": (
            {"cmd": "round", "round": 0, "weights": W0, "standardisation": STD},
            "must come sealed",
        ),
        "one bit changed in node 0's sealed model": (_round(altered, 0, 0), "authentication"),
        "node 1's sealed model relayed to node 0": (_round(swapped, 0, 0), "authentication"),
        "the platform's own model, sealed under its own key": (
            _platform_sealed(job),
            "authentication",
        ),
    }


def test_an_fl_node_refuses_any_model_but_the_one_the_requester_sealed_for_it(
    key: JobKey,
) -> None:
    """Each attack on a fresh job: a refusal ends the node's session, as it should."""
    for i in range(4):
        job = _Job(key)
        try:
            sealed = job.sealer.seal(0, {"weights": W0, "standardisation": STD}, {})
            name, (command, why) = list(_attacks(sealed, job).items())[i]
            outcome = job.call(0, command)
            assert not outcome.ok and why in outcome.detail, (name, outcome)
        finally:
            job.close()


def test_fl_nodes_train_from_the_sealed_model_and_refuse_its_replay(key: JobKey) -> None:
    job = _Job(key)
    try:
        sealed = job.sealer.seal(0, {"weights": W0, "standardisation": STD}, {})
        assert json.dumps(W0)[1:-1].encode() not in json.dumps(sealed).encode()
        out = [job.call(n.index, _round(sealed, 0, n.index)) for n in job.nodes]
        total = _open(key, job.party, [o.unwrap() for o in out])
        expect = np.zeros(3)
        for k in (0, 1):
            xb, y = _xb(k, STD)
            w = np.asarray(W0)
            expect += (30 / 60) * (local_train(xb, y, w, 1.0 / 60, 0.5, 3) - w)
        want = [round(v * (1 << UPDATE_BITS)) for v in expect.tolist()]
        assert all(abs(a - b) <= 2 for a, b in zip(total[:3], want, strict=True))
        # Round 0's sealed model replayed as round 1: refused (the round is its nonce).
        again = job.call(0, _round(sealed, 1, 0))
        assert not again.ok and "authentication" in again.detail, again
    finally:
        job.close()
