"""Offline verification catches every kind of tampering and names where it happened."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from audit.errors import VerificationInputError
from audit.verify import VerifyReport, verify_export
from gateway.platform import build_platform, initialise
from gateway.settings import Settings
from ledger.checkpoint import Checkpoint
from ledger.export import export
from ledger.note import sign_note
from ledger.signing import Ed25519LedgerSigner
from tests.test_ledger_log import append, verifier_key

ENTRIES = 700


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Ed25519LedgerSigner]:
    """One exported log (several blocks, >2 level-0 tiles) shared by the tamper tests."""
    home = tmp_path_factory.mktemp("ledger")
    platform = build_platform(
        Settings(home=home / "home", database_url=f"sqlite:///{home / 'pdx.db'}")
    )
    initialise(platform)
    for _ in range(4):
        append(platform, ENTRIES // 4)
        platform.sealer.seal_now()
    out = home / "export"
    with platform.session() as session:
        export(session, platform.ledger, out)
    key = verifier_key(platform)
    with platform.session() as session, session.begin():
        private = platform.keystore.signing_key(
            session, purpose="ledger-signing", now=platform.now()
        ).private_key
    platform.engine.dispose()
    return out, key, Ed25519LedgerSigner(platform.settings.ledger_origin, private)


def tampered(
    sealed: tuple[Path, str, Ed25519LedgerSigner],
    tmp_path: Path,
    name: str,
    change: Callable[[list[bytes]], None],
) -> VerifyReport:
    source, key, _ = sealed
    target = tmp_path / "copy"
    shutil.copytree(source, target)
    path = target / name
    lines = path.read_bytes().split(b"\n")[:-1]
    change(lines)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return verify_export(target, [key])


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_untouched_export_verifies(sealed: tuple[Path, str, Ed25519LedgerSigner]) -> None:
    report = verify_export(sealed[0], [sealed[1]])
    assert report.ok, report.problem
    assert report.entries >= ENTRIES and report.blocks >= 5 and report.checkpoints >= 5


def test_changed_leaf_byte_names_the_entry(sealed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def change(lines: list[bytes]) -> None:
        lines[300] = lines[300].replace(b"obj-", b"obk-", 1)  # still canonical JSON

    report = tampered(sealed, tmp_path, "entries.jsonl", change)
    assert not report.ok and report.bad_index == 300, report.problem


def test_leaf_that_is_no_longer_canonical_names_the_entry(sealed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def change(lines: list[bytes]) -> None:
        lines[42] = lines[42].replace(b'"action":', b'"action" :', 1)

    report = tampered(sealed, tmp_path, "entries.jsonl", change)
    assert not report.ok and report.bad_index == 42, report.problem


def test_deleted_entry_names_its_index(sealed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = tampered(sealed, tmp_path, "entries.jsonl", lambda lines: lines.pop(123))
    assert not report.ok and report.bad_index == 123, report.problem


def test_reordered_entries_name_the_first(sealed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def change(lines: list[bytes]) -> None:
        lines[500], lines[501] = lines[501], lines[500]

    report = tampered(sealed, tmp_path, "entries.jsonl", change)
    assert not report.ok and report.bad_index == 500, report.problem


def test_truncated_log_fails(sealed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    report = tampered(sealed, tmp_path, "entries.jsonl", lambda lines: lines.pop())
    assert not report.ok and report.problem is not None


def test_changed_stored_node_names_the_tile(sealed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def change(lines: list[bytes]) -> None:
        tile = json.loads(lines[0])
        raw = base64.b64decode(tile["hashes"])
        tile["hashes"] = base64.b64encode(flip(raw, 32 * 77)).decode()
        lines[0] = json.dumps(tile, separators=(",", ":"), sort_keys=True).encode()

    report = tampered(sealed, tmp_path, "tiles.jsonl", change)
    assert not report.ok and report.bad_index == 77, report.problem


def test_changed_upper_level_node_is_found(sealed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def change(lines: list[bytes]) -> None:
        for i, line in enumerate(lines):
            tile = json.loads(line)
            if tile["level"] == 1:
                tile["hashes"] = base64.b64encode(flip(base64.b64decode(tile["hashes"]), 0))
                tile["hashes"] = tile["hashes"].decode()
                lines[i] = json.dumps(tile, separators=(",", ":"), sort_keys=True).encode()
                return
        raise AssertionError("no level-1 tile: the log is too small for this test")

    report = tampered(sealed, tmp_path, "tiles.jsonl", change)
    assert not report.ok and "level 8, index 0" in (report.problem or ""), report.problem


@pytest.mark.parametrize("field", ["root", "signature", "prev_block_hash"])
def test_changed_block_field_names_the_block(sealed, tmp_path: Path, field: str) -> None:  # type: ignore[no-untyped-def]
    def change(lines: list[bytes]) -> None:
        block = json.loads(lines[2])
        block[field] = base64.b64encode(flip(base64.b64decode(block[field]), 3)).decode()
        lines[2] = json.dumps(block, separators=(",", ":"), sort_keys=True).encode()

    report = tampered(sealed, tmp_path, "blocks.jsonl", change)
    assert not report.ok and report.bad_block == 2, report.problem


def test_changed_checkpoint_names_its_block(sealed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def change(lines: list[bytes]) -> None:
        item = json.loads(lines[3])
        origin, size, root, rest = item["note"].split("\n", 3)
        item["note"] = "\n".join([origin, str(int(size) + 1), root, rest])
        lines[3] = json.dumps(item, separators=(",", ":"), sort_keys=True).encode()

    report = tampered(sealed, tmp_path, "checkpoints.jsonl", change)
    assert not report.ok and report.bad_block == 3, report.problem


def test_fork_against_an_earlier_checkpoint_fails(sealed) -> None:  # type: ignore[no-untyped-def]
    out, key, signer = sealed
    # The operator once showed the auditor a different tree of size 200, signed.
    fork = sign_note(Checkpoint(signer.note_signer.name, 200, bytes(32)).body(), signer.note_signer)
    report = verify_export(out, [key], trusted=[fork.decode()])
    assert not report.ok and "fork" in (report.problem or "") and report.bad_index == 199
    honest_size = verify_export(out, [key])
    assert honest_size.ok


def test_untrusted_key_fails_and_bad_input_is_an_input_error(sealed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from crypto import SignatureAlgorithm, generate_key_pair
    from ledger import Ed25519NoteSigner, verifier_key

    other = generate_key_pair(SignatureAlgorithm.ED25519)
    stranger = verifier_key(sealed[2].note_signer.name, other.public_key())
    assert Ed25519NoteSigner(sealed[2].note_signer.name, other).key_hash != 0
    report = verify_export(sealed[0], [stranger])
    assert not report.ok and report.bad_block == 0
    with pytest.raises(VerificationInputError):
        verify_export(sealed[0], ["not a key"])
    with pytest.raises(VerificationInputError):
        verify_export(tmp_path / "missing", [sealed[1]])


@pytest.mark.slow
def test_cli_exit_codes(sealed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out, key, _ = sealed
    pdx = [sys.executable, "-m", "gateway.cli"]
    ok = subprocess.run([*pdx, "audit", "verify", str(out), "--pubkey", key], capture_output=True)
    assert ok.returncode == 0, ok.stderr
    assert b"verified" in ok.stdout
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    entries = (broken / "entries.jsonl").read_bytes().split(b"\n")
    entries[7] = entries[7].replace(b'"ts":"20', b'"ts":"21', 1)
    (broken / "entries.jsonl").write_bytes(b"\n".join(entries))
    bad = subprocess.run(
        [*pdx, "audit", "verify", str(broken), "--pubkey", key], capture_output=True
    )
    assert bad.returncode == 1
    assert bad.stderr.decode().count("\n") == 1 and "entry 7" in bad.stderr.decode()
    missing = subprocess.run(
        [*pdx, "audit", "verify", str(tmp_path / "nope"), "--pubkey", key], capture_output=True
    )
    assert missing.returncode == 2 and missing.stderr.startswith(b"pdx: error:")
