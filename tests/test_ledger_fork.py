"""An operator rewrite: witnesses and chain refuse it, both verifiers name the tree size."""

from __future__ import annotations

from pathlib import Path

from audit.verify import WitnessPolicy, verify_export
from crypto import SignatureAlgorithm, generate_key_pair
from ledger import AnchorSchedule, ChainAnchors, ChainWriter
from ledger.anchor import Anchorer, connect
from tests.helpers.i19_anchor import ORIGIN, Log, rewrite, witness_server
from tests.test_ledger_witness import _publisher


def test_rewrite_is_refused_by_witnesses_and_chain_and_both_verifiers_name_the_size(
    tmp_path: Path,
) -> None:
    log = Log()
    writer = ChainWriter(
        connect(None), generate_key_pair(SignatureAlgorithm.ECDSA_SECP256K1_SHA256).private_bytes()
    )
    writer.fund_from_node()
    writer.deploy()

    def proof(first: int, second: int) -> list[bytes]:
        with log.storage.transaction() as tx:
            return log.ledger.consistency_proof(tx, first, second)

    with witness_server(log, "w.example/1") as w1, witness_server(log, "w.example/2") as w2:
        publisher, store = _publisher(log, w1, w2)
        publisher.anchorer = Anchorer(writer, ORIGIN, proof, AnchorSchedule(every_blocks=1))
        for n in (3, 3, 3):  # blocks end at 3, 6, 9; each cosigned by both and anchored
            log.grow(n)
            assert publisher.publish_now(anchor=True) == 2
        keys = [w.signer.verifier().verifier_key() for w in (w1, w2)]
        policy = WitnessPolicy.parse(keys, 2)
        assert writer.reader is not None
        anchors = ChainAnchors(writer.w3, writer.reader.address).anchors(ORIGIN)
        assert [s for s, _ in anchors] == [3, 6, 9]
        log.export(tmp_path / "honest", store.lines())
        honest = verify_export(
            tmp_path / "honest", [log.signer.verifier_key()], witnesses=policy, anchors=anchors
        )
        assert honest.ok, honest.problem

        # The operator rewrites entry 4 (inside tree sizes 6 and 9), re-signs, grows.
        forged = rewrite(log, 4)
        forged.grow(2)
        forger, forged_store = _publisher(forged, w1, w2)
        forger.anchorer = Anchorer(
            writer, ORIGIN, lambda a, b: _proof(forged, a, b), AnchorSchedule(every_blocks=1)
        )
        for endpoint in forger.witnesses:
            endpoint.known_size = 9
        assert forger.publish_now(anchor=True) == 0
        assert len(forger.refusals) == 2 and all("HTTP 422" in r for r in forger.refusals)
        assert forger.anchorer.refusals == [
            "the chain refused: not consistent with the last anchored root"
        ]
        assert writer.reader.latest(ORIGIN)[0] == 9

    # The forged export carries the cosignatures the platform stored for sizes 3, 6, 9.
    forged.export(tmp_path / "forged", store.lines())
    keys_only = verify_export(tmp_path / "forged", [log.signer.verifier_key()])
    assert keys_only.ok  # the operator's key alone cannot tell
    by_witness = verify_export(tmp_path / "forged", [log.signer.verifier_key()], witnesses=policy)
    assert not by_witness.ok and by_witness.bad_size == 6
    assert "tree size 6" in (by_witness.problem or "")
    by_chain = verify_export(tmp_path / "forged", [log.signer.verifier_key()], anchors=anchors)
    assert not by_chain.ok and by_chain.bad_size == 6
    assert "the chain contradicts this log at tree size 6" in (by_chain.problem or "")


def _proof(log: Log, first: int, second: int) -> list[bytes]:
    with log.storage.transaction() as tx:
        return log.ledger.consistency_proof(tx, first, second)
