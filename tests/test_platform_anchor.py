"""The running platform anchors its checkpoints on a chain with its KMS chain-signing key."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_utils import keccak
from fastapi.testclient import TestClient

from audit.verify import verify_export
from crypto import unsafe_export_chain_key
from gateway.app import create_app
from gateway.platform import Platform, build_platform, initialise
from gateway.settings import Settings
from ledger import AnchorError, ChainAnchors, export
from ledger.anchor import Anchorer, connect
from tests.helpers.i19_wiring import PDX, ganache_node, pdx_run, pdx_witness, wait_for
from tests.test_ledger_log import append, verifier_key


def _anchorer(platform: Platform) -> Anchorer:
    publishing = platform.publishing
    assert publishing is not None
    return wait_for("the anchorer", lambda: publishing.anchorer)


def _sealed(platform: Platform) -> tuple[int, bytes]:
    with platform.session() as session:
        latest = platform.ledger.latest(session)
    assert latest is not None
    return latest.block.tree_size, latest.block.root


def test_running_platform_anchors_on_the_embedded_chain_with_its_kms_key(
    settings: Settings, tmp_path: Path
) -> None:
    s = settings.replace(seed_demo=False, anchor="embedded", anchor_every_blocks=1)
    platform = build_platform(s)
    initialise(platform)
    try:
        with TestClient(create_app(platform)):
            anchorer = _anchorer(platform)
            first = _sealed(platform)
            # The first round anchors what there is at start...
            wait_for("the first anchor", lambda: anchorer.anchored_size == first[0])
            # ...then every sealed block (every 1 block here), with an on-chain-checked proof.
            append(platform, 25)
            platform.sealer.seal_now()
            second = _sealed(platform)
            wait_for("the second anchor", lambda: anchorer.anchored_size == second[0])
            writer = anchorer.writer
            assert writer.reader is not None
            anchors = ChainAnchors(writer.w3, writer.reader.address).anchors(s.ledger_origin)
            # Other start-up work (a scheduled compliance run, say) may seal around the
            # first read, so the chain may also hold an earlier and a later anchor: the
            # one read is there, sizes only grow, and the newest is the last seal.
            assert first in anchors and anchors[-1] == second
            sizes = [size for size, _ in anchors]
            assert sizes == sorted(set(sizes))
            assert anchorer.refusals == []
            # The account is the KMS's chain-signing key (secp256k1), exported through
            # the key store: address = Keccak-256(x ‖ y)[12:].
            with platform.session() as session, session.begin():
                key = unsafe_export_chain_key(platform.keystore, session, now=platform.now())
            assert key.public_key[0] == 4 and len(key.private_scalar) == 32
            address = Account.from_key(key.private_scalar).address
            assert address == writer.account
            assert address.lower() == "0x" + keccak(key.public_key[1:])[12:].hex()
            assert not s.anchor_file.exists()  # nothing to find again: a new chain per start
        # The export agrees with the chain.
        out = tmp_path / "export"
        with platform.session() as session:
            export(session, platform.ledger, out)
        report = verify_export(out, [verifier_key(platform)], anchors=anchors)
        assert report.ok and report.anchors_checked == len(anchors), report.problem
        # A restart signs with the same KMS key (not a new one per start).
        with TestClient(create_app(platform)):
            assert _anchorer(platform).writer.account == address
        with platform.session() as session, session.begin():
            again = unsafe_export_chain_key(platform.keystore, session, now=platform.now())
        assert (again.key_id, again.version) == (key.key_id, key.version)
    finally:
        platform.engine.dispose()


def test_a_configured_contract_that_is_not_there_stops_start_up(
    settings: Settings,
) -> None:
    # Anchoring silently off would look like anchoring on; the operator hears at start.
    missing = "0x" + "11" * 20
    s = settings.replace(seed_demo=False, anchor="embedded", anchor_contract=missing)
    platform = build_platform(s)
    initialise(platform)
    try:
        with pytest.raises(AnchorError, match="no anchor contract at"):
            with TestClient(create_app(platform)):
                pass
        assert platform.publishing is not None and platform.publishing.publisher is None
    finally:
        platform.engine.dispose()


@pytest.mark.slow
@pytest.mark.e2e
def test_pdx_run_cosigns_and_anchors_on_ganache_then_audit_verify_chain(tmp_path: Path) -> None:
    """The real server (uvicorn, lifespan), a `pdx witness` and a ganache node, each a process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDX_")}
    env.update(PDX_HOME=str(tmp_path / "home"), PDX_SEED_DEMO="0", PDX_ANCHOR_EVERY_BLOCKS="1")

    def pdx(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*PDX, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    log_key = pdx("ledger", "verifier-key").stdout.strip()
    assert log_key.startswith("pdx.local/ledger+"), log_key
    with (
        ganache_node() as chain,
        pdx_witness(tmp_path, "w1.example/w", log_key, env) as (witness_url, witness_key),
    ):
        env.update(PDX_ANCHOR=chain, PDX_WITNESSES=f"w1.example/w={witness_url}={witness_key}")
        with pdx_run(env) as (url, _):

            def served() -> str | None:
                note = httpx.get(url + "/v1/ledger/checkpoint", timeout=5).text
                return note if "\n— w1.example/w " in note else None

            note = wait_for("a cosigned checkpoint from the server", served, 60)
            size = int(note.split("\n")[1])
            recorded = wait_for(
                "the recorded contract",
                lambda: (
                    (Path(env["PDX_HOME"]) / "anchor.json").is_file()
                    and json.loads((Path(env["PDX_HOME"]) / "anchor.json").read_text())
                ),
            )
            assert recorded["chain"] == chain and recorded["chain_id"] == 1337
            reader = ChainAnchors(connect(chain), recorded["contract"])
            wait_for("the anchor", lambda: reader.latest("pdx.local/ledger")[0] >= size, 60)
        # Stopped (final seal): export and check against the witness and the chain.
        out = tmp_path / "export"
        assert pdx("ledger", "export", "--out", str(out)).returncode == 0
        verify = pdx(
            "audit",
            "verify",
            str(out),
            "--pubkey",
            log_key,
            "--witness",
            witness_key,
            "--chain",
            chain,
            "--contract",
            recorded["contract"],
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        anchored = len(reader.anchors("pdx.local/ledger"))
        assert f"pdx: {anchored} chain anchors agree" in verify.stdout
        assert "witnessed up to tree size" in verify.stdout
        # A second start on the same chain finds the recorded contract (no new deploy).
        with pdx_run(env):
            pass  # serving means the lifespan started publishing (contract found or deployed)
        assert json.loads((Path(env["PDX_HOME"]) / "anchor.json").read_text()) == recorded


def test_a_seal_during_an_anchor_is_not_forgotten() -> None:
    """A block sealed while the chain call runs keeps the next anchor due (it was lost)."""
    from crypto import SignatureAlgorithm, generate_key_pair
    from ledger import AnchorSchedule, ChainWriter
    from tests.helpers.i19_anchor import ORIGIN, Log

    writer = ChainWriter(
        connect(None), generate_key_pair(SignatureAlgorithm.ECDSA_SECP256K1_SHA256).private_bytes()
    )
    writer.fund_from_node()
    writer.deploy()
    log = Log()
    anchorer: Anchorer

    def proof(first: int, second: int) -> list[bytes]:
        # The sealer's thread reports a new block while this anchor is on its way.
        anchorer.sealed(1)
        with log.storage.transaction() as tx:
            return log.ledger.consistency_proof(tx, first, second)

    # every_s large: only the block count can make an anchor due.
    anchorer = Anchorer(writer, ORIGIN, proof, AnchorSchedule(every_blocks=1, every_s=3600))

    def head() -> tuple[int, bytes]:
        with log.storage.transaction() as tx:
            latest = log.ledger.latest(tx)
        assert latest is not None
        return latest.block.tree_size, latest.block.root

    log.grow(3)
    anchorer.sealed(1)
    assert anchorer.anchor(*head())  # the first anchor needs no proof
    assert not anchorer.due()
    log.grow(2)
    anchorer.sealed(1)
    assert anchorer.pending == 1
    assert anchorer.anchor(*head())  # the proof step "seals" one more meanwhile
    assert anchorer.anchored_size == 5
    assert anchorer.due(), "the block sealed during the anchor was forgotten"
    assert anchorer.pending == 1
