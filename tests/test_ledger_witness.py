"""Witness cosigning through real tlog-witness HTTP servers: consistency, fork refusal, k of n."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import httpx

from audit.verify import WitnessPolicy, verify_export
from crypto import SignatureAlgorithm, generate_key_pair
from ledger import (
    CosignatureV1Signer,
    MemoryCosignatures,
    Publisher,
    WitnessEndpoint,
    open_note,
    parse_verifier_key,
)
from ledger.witness import add_checkpoint_request, cosigned_message
from tests.helpers.i19_anchor import Log, rewrite, witness_server


def _publisher(log: Log, *witnesses: object) -> tuple[Publisher, MemoryCosignatures]:
    store = MemoryCosignatures()
    endpoints = [WitnessEndpoint(w.url, w.signer.verifier()) for w in witnesses]  # type: ignore[attr-defined]
    return Publisher(log.ledger, log.storage.transaction, witnesses=endpoints, store=store), store


def test_cosignature_v1_wire_format_matches_c2sp() -> None:
    # C2SP tlog-cosignature: key ID = SHA-256(name ‖ 0x0A ‖ 0x04 ‖ key)[:4]; signature
    # line = key ID ‖ uint64 time ‖ Ed25519 over "cosignature/v1\ntime T\n" ‖ body.
    pair = generate_key_pair(SignatureAlgorithm.ED25519)
    signer = CosignatureV1Signer("w.example/1", pair)
    key_id = hashlib.sha256(b"w.example/1\n\x04" + pair.public_bytes()).digest()[:4]
    body = "o\n1\n" + base64.b64encode(b"\x01" * 32).decode() + "\n"
    line = signer.cosign(body, 1_790_000_000)
    blob = base64.b64decode(line.split(" ")[2])
    assert blob[:4] == key_id and int.from_bytes(blob[4:12], "big") == 1_790_000_000
    message = b"cosignature/v1\ntime 1790000000\n" + body.encode()
    assert cosigned_message(body, 1_790_000_000) == message
    assert pair.public_key().verify(message, blob[12:])
    # The verifier key round-trips through the signed-note parser (algorithm 0x04).
    verifier = parse_verifier_key(signer.verifier().verifier_key())
    assert open_note(f"{body}\n{line}".encode(), [verifier])[1] == ["w.example/1"]


def test_witnesses_cosign_consistent_checkpoints_and_policy_k_of_n(tmp_path: Path) -> None:
    log = Log()
    with (
        witness_server(log, "w.example/1", tmp_path / "w1.json") as w1,
        witness_server(log, "w.example/2") as w2,
    ):
        publisher, store = _publisher(log, w1, w2)
        log.grow(5)
        assert publisher.publish_now() == 2
        log.grow(7)
        # The second round sends "old 5" and an RFC 9162 proof 5 -> 12.
        assert publisher.publish_now() == 2
        assert w1.known("pdx.test/i19")[0] == 12  # type: ignore[index]
        assert sorted(store.stored) == [5, 12] and not publisher.refusals
        third = CosignatureV1Signer("w.example/3", generate_key_pair(SignatureAlgorithm.ED25519))
        keys = [w.signer.verifier().verifier_key() for w in (w1, w2)]
        keys.append(third.verifier().verifier_key())
    out = tmp_path / "export"
    log.export(out, store.lines())
    pubkey = [log.signer.verifier_key()]
    report = verify_export(out, pubkey, witnesses=WitnessPolicy.parse(keys, 2))
    assert report.ok, report.problem
    assert report.witnessed_size == 12
    # 3 of 3: the third witness never cosigned, so the policy is not met.
    report = verify_export(out, pubkey, witnesses=WitnessPolicy.parse(keys, 3))
    assert not report.ok and "cosigned by 3 of the 3 witnesses" in (report.problem or "")


def test_witness_refuses_a_fork_and_the_refusal_is_visible(tmp_path: Path) -> None:
    honest = Log()
    honest.grow(4)
    honest.grow(4)
    forged = rewrite(honest, 2)  # same key, same sizes, entry 2 changed, re-signed
    forged.grow(3)
    with witness_server(honest, "w.example/1", tmp_path / "w.json") as w1:
        publisher, _ = _publisher(honest, w1)
        assert publisher.publish_now() == 1  # cosigned size 8 of the honest log
        # The operator now presents the rewritten log (size 11) to the same witness.
        forger, store = _publisher(forged, w1)
        forger.witnesses[0].known_size = 8
        assert forger.publish_now() == 0
        assert store.stored == {}
        assert any("HTTP 422" in r and "tree size 11" in r for r in forger.refusals)
        assert any("not consistent with the cosigned size 8" in r for r in w1.refusals)
        # A same-size fork (re-signed size 8) is a 409 naming the witness's size.
        with forged.storage.transaction() as tx:
            note8 = forged.ledger.block_for(tx, 8).checkpoint
        r = httpx.post(w1.url, content=add_checkpoint_request(8, [], note8))  # type: ignore[attr-defined]
        assert r.status_code == 409 and r.text == "8\n"
        assert r.headers["content-type"] == "text/x.tlog.size"
        # A rollback to an earlier size is refused too; the witness state survives.
        with honest.storage.transaction() as tx:
            note4 = honest.ledger.block_for(tx, 4).checkpoint
        r = httpx.post(w1.url, content=add_checkpoint_request(4, [], note4))  # type: ignore[attr-defined]
        assert r.status_code == 409
    assert '"size": 8' in (tmp_path / "w.json").read_text()


def test_witness_refuses_checkpoints_not_signed_by_the_log(tmp_path: Path) -> None:
    honest = Log()
    other = Log()  # another key claiming the same origin
    note = other.grow(2)
    with witness_server(honest, "w.example/1") as w1:
        r = httpx.post(w1.url, content=add_checkpoint_request(0, [], note))  # type: ignore[attr-defined]
        assert r.status_code == 403
        assert w1.known("pdx.test/i19") is None
