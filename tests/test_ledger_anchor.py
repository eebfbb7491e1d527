"""Anchoring on an EVM chain: the embedded eth-tester chain and a separate ganache node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto import SignatureAlgorithm, generate_key_pair
from gateway.cli import main
from ledger import AnchorRefused, AnchorSchedule, ChainWriter
from ledger.anchor import ARTIFACT_PATH, Anchorer, compile_contract, connect, contract_artifact
from tests.helpers.i19_anchor import ORIGIN, Log, rewrite
from tests.helpers.i19_wiring import ganache_node


def _key() -> bytes:
    return generate_key_pair(SignatureAlgorithm.ECDSA_SECP256K1_SHA256).private_bytes()


def _anchorer(log: Log, writer: ChainWriter) -> Anchorer:
    def proof(first: int, second: int) -> list[bytes]:
        with log.storage.transaction() as tx:
            return log.ledger.consistency_proof(tx, first, second)

    return Anchorer(writer, ORIGIN, proof, AnchorSchedule(every_blocks=1))


def _head(log: Log) -> tuple[int, bytes]:
    with log.storage.transaction() as tx:
        block = log.ledger.latest(tx)
    assert block is not None
    return block.block.tree_size, block.block.root


def test_committed_artifact_is_the_compiled_source() -> None:
    # The running code loads anchor.json; it must be what the pinned Vyper makes of anchor.vy.
    assert compile_contract() == contract_artifact(), f"recompile into {ARTIFACT_PATH}"


def _exercise(w3: object) -> None:
    writer = ChainWriter(w3, _key())
    writer.fund_from_node()
    writer.deploy()
    log = Log()
    anchorer = _anchorer(log, writer)
    for n in (3, 4, 9):
        log.grow(n)
        assert anchorer.anchor(*_head(log))
    assert writer.reader is not None
    assert [s for s, _ in writer.reader.anchors(ORIGIN)] == [3, 7, 16]
    # A rewritten, larger tree: the chain checks the proof from 16 and refuses.
    forged = rewrite(log, 5)
    forged.grow(4)
    size, root = _head(forged)
    with forged.storage.transaction() as tx:
        proof = forged.ledger.consistency_proof(tx, 16, 20)
    with pytest.raises(AnchorRefused, match="not consistent with the last anchored root"):
        writer.anchor(ORIGIN, size, root, proof)
    # Someone who is not a registered writer cannot anchor even an honest extension.
    stranger = ChainWriter(w3, _key(), address=writer.reader.address)
    stranger.fund_from_node()
    log.grow(1)
    with pytest.raises(AnchorRefused, match="not a registered writer"):
        stranger.anchor(ORIGIN, *_head(log), [])
    assert writer.reader.latest(ORIGIN)[0] == 16


def test_anchoring_on_the_embedded_chain() -> None:
    _exercise(connect(None))


@pytest.fixture
def ganache() -> Iterator[str]:
    """A separate ganache JSON-RPC node on a loopback port (npm install ganache)."""
    with ganache_node() as url:
        yield url


def test_anchoring_on_a_separate_node_process(ganache: str) -> None:
    _exercise(connect(ganache))


def test_audit_verify_chain_passes_honest_and_names_the_rewritten_size(
    ganache: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w3 = connect(ganache)
    writer = ChainWriter(w3, _key())
    writer.fund_from_node()
    address = writer.deploy()
    log = Log()
    anchorer = _anchorer(log, writer)
    for n in (4, 4, 4):
        log.grow(n)
        assert anchorer.anchor(*_head(log))
    key = tmp_path / "log.vkey"
    key.write_text(log.signer.verifier_key())
    log.export(tmp_path / "honest")
    args = ["audit", "verify", "--pubkey", str(key), "--chain", ganache, "--contract", address]
    assert main([*args[:2], str(tmp_path / "honest"), *args[2:]]) == 0
    assert "3 chain anchors agree" in capsys.readouterr().out
    # The operator rewrites entry 5 and re-signs everything: self-consistent, so the
    # log key alone accepts it; the chain does not. The first anchored size that
    # contains entry 5 is 8.
    rewrite(log, 5).export(tmp_path / "forged")
    assert main(["audit", "verify", str(tmp_path / "forged"), "--pubkey", str(key)]) == 0
    capsys.readouterr()
    assert main([*args[:2], str(tmp_path / "forged"), *args[2:]]) == 1
    err = capsys.readouterr().err
    assert "the chain contradicts this log at tree size 8" in err
