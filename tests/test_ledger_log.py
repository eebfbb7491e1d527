"""The ledger in the platform database: dense appends, atomicity, sealing, proofs, crashes."""

from __future__ import annotations

import base64
import dataclasses
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from audit.verify import verify_export
from gateway.platform import Platform, build_platform, initialise, ledger_signer_for
from gateway.settings import Settings
from ledger.checkpoint import Checkpoint
from ledger.errors import InvalidRange, InvalidRecord
from ledger.export import export
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.note import open_note, parse_verifier_key
from ledger.records import LedgerRecord

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)


def record(i: int, type: str = "test.appended") -> LedgerRecord:
    return LedgerRecord(
        type=type,
        action="append",
        object_type="test",
        object_id=f"obj-{i}",
        actor="tester",
        subject_org=None,
        decision_id=None,
        purpose="testing",
        request_id=None,
        payload_digest=None,
        ts=NOW,
    )


def verifier_key(platform: Platform) -> str:
    with platform.session() as session, session.begin():
        signer = ledger_signer_for(
            platform_keystore=platform.keystore,
            settings=platform.settings,
            session=session,
            now=platform.now(),
        )
    return signer.verifier_key()


def append(platform: Platform, count: int, batch: int = 37) -> None:
    done = 0
    while done < count:
        n = min(batch, count - done)
        with platform.session() as session, session.begin():
            platform.ledger.append_many(session, [record(done + i) for i in range(n)])
        done += n


@pytest.fixture
def ready(platform: Platform) -> Platform:
    initialise(platform)
    return platform


def test_leaf_is_canonical_json_with_millisecond_utc() -> None:
    leaf = record(1).leaf()
    assert leaf.startswith(b'{"action":"append","actor":"tester","decision_id":null')
    assert b'"ts":"2026-11-26T12:00:00.123Z"' in leaf
    with pytest.raises(InvalidRecord):
        record(1, type="Bad Type")
    with pytest.raises(InvalidRecord):
        dataclasses.replace(record(1), ts=datetime(2026, 1, 1))  # naive


def test_appends_are_dense_and_proofs_verify_against_signed_checkpoints(
    ready: Platform,
) -> None:
    ledger = ready.ledger
    h = ledger.hasher
    verifier = parse_verifier_key(verifier_key(ready))
    with ready.session() as session:
        start = ledger.size(session)
    append(ready, 300)
    first_blocks = ready.sealer.seal_now()
    append(ready, 700)
    ready.sealer.seal_now()
    with ready.session() as session:
        size = ledger.size(session)
        assert size == start + 1000
        notes = [b.checkpoint for b in ledger.blocks(session, 0, 100)]
        checkpoints = [Checkpoint.parse(open_note(n.encode(), [verifier])[0]) for n in notes]
        final = checkpoints[-1]
        assert final.size == size
        leaves = {
            e.index: e.leaf
            for page_start in range(0, size, 1000)
            for e in ledger.entries(session, start=page_start, end=size)
        }
        assert sorted(leaves) == list(range(size))
        rng = random.Random(7)
        for index in [0, size - 1, *rng.sample(range(size), 40)]:
            proof = ledger.inclusion_proof(session, index, size)
            verify_inclusion(h, index, size, h.leaf(leaves[index]), proof, final.root_hash)
        early = first_blocks[-1].block
        for older in [c for c in checkpoints if 0 < c.size < size]:
            proof = ledger.consistency_proof(session, older.size, size)
            verify_consistency(h, older.size, size, older.root_hash, final.root_hash, proof)
        assert early.tree_size == start + 300
        with pytest.raises(InvalidRange):
            ledger.inclusion_proof(session, 0, size + 1)  # beyond the newest checkpoint
        with pytest.raises(InvalidRange):
            ledger.consistency_proof(session, 5, 4)


def test_failed_operation_leaves_no_entry_and_no_gap(ready: Platform) -> None:
    with ready.session() as session:
        before = ready.ledger.size(session)
    with pytest.raises(RuntimeError), ready.session() as session, session.begin():
        ready.ledger.append(session, record(1))
        raise RuntimeError("the operation failed after its append")
    with ready.session() as session, session.begin():
        index = ready.ledger.append(session, record(2))
    assert index == before
    with ready.session() as session:
        assert ready.ledger.size(session) == before + 1
        assert [e.index for e in ready.ledger.entries(session, start=before)] == [before]


def test_concurrent_appenders_get_dense_indexes(ready: Platform) -> None:
    if ready.engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one writer; PostgreSQL is the concurrent backend")
    with ready.session() as session:
        before = ready.ledger.size(session)
    got: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(25):
            with ready.session() as session, session.begin():
                index = ready.ledger.append(session, record(n * 100 + i))
            with lock:
                got.append(index)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(before, before + 100))
    ready.sealer.seal_now()
    with ready.session() as session:
        assert ready.ledger.sealed_size(session) == before + 100


def test_offline_verification_of_an_export(ready: Platform, tmp_path: Path) -> None:
    append(ready, 520)
    ready.sealer.seal_now()
    out = tmp_path / "export"
    with ready.session() as session:
        summary = export(session, ready.ledger, out)
    report = verify_export(out, [verifier_key(ready)])
    assert report.ok, report.problem
    assert report.entries == summary.entries and report.blocks == summary.blocks


def test_a_changed_stored_leaf_is_found_after_export(ready: Platform, tmp_path: Path) -> None:
    with ready.session() as session:
        target = ready.ledger.size(session) + 20  # one of ours, whatever seeding wrote
    append(ready, 40)
    ready.sealer.seal_now()
    with ready.session() as session, session.begin():
        leaf = ready.ledger.entry(session, target).leaf
        forged = leaf.replace(b"obj-", b"obx-", 1)
        assert forged != leaf
        session.execute(
            text("UPDATE ledger_entries SET leaf = :leaf WHERE idx = :idx"),
            {"leaf": forged, "idx": target},
        )
    with ready.session() as session:
        export(session, ready.ledger, tmp_path / "x")
    report = verify_export(tmp_path / "x", [verifier_key(ready)])
    assert not report.ok
    assert report.bad_index == target, report.problem


def _crash_child(url: str, home: str) -> None:
    """Append and seal in a loop until killed (run in a subprocess)."""
    from gateway.platform import build_platform
    from gateway.settings import Settings

    platform = build_platform(Settings(home=Path(home), database_url=url, ledger_seal_entries=500))
    initialise(platform)
    platform.sealer.start()
    print("ready", flush=True)
    i = 0
    while True:
        with platform.session() as session, session.begin():
            platform.ledger.append_many(session, [record(i + k) for k in range(50)])
        i += 50


@pytest.mark.slow
def test_killed_mid_batch_leaves_a_log_that_verifies(
    platform: Platform, settings: object, tmp_path: Path
) -> None:
    url = platform.settings.database_url
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from tests.test_ledger_log import _crash_child; "
            "_crash_child(sys.argv[1], sys.argv[2])",
            url,
            str(platform.settings.home),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == b"ready"
    time.sleep(1.5)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with platform.session() as session:
        assert platform.ledger.size(session) > 0
        export(session, platform.ledger, tmp_path / "after-crash")
    report = verify_export(tmp_path / "after-crash", [verifier_key(platform)])
    assert report.ok, report.problem
    platform.sealer.seal_now()  # the committed, unsealed tail seals cleanly afterwards
    with platform.session() as session:
        assert platform.ledger.sealed_size(session) == platform.ledger.size(session)
        export(session, platform.ledger, tmp_path / "resealed")
    assert verify_export(tmp_path / "resealed", [verifier_key(platform)]).ok


@pytest.mark.parametrize("suite", ["sm"])
def test_sm_suite_signs_blocks_and_checkpoints_with_sm2_and_hashes_with_sm3(
    tmp_path: Path, suite: str
) -> None:
    platform = build_platform(
        Settings(
            home=tmp_path / "home",
            database_url=f"sqlite:///{tmp_path / 'sm.db'}",
            cipher_suite=suite,
            ledger_hash="sm3",
        )
    )
    initialise(platform)
    append(platform, 300)
    platform.sealer.seal_now()
    key = verifier_key(platform)
    assert base64.b64decode(key.split("+", 2)[2]).startswith(b"\xffsm2-sm3")
    with platform.session() as session:
        note = platform.ledger.checkpoint(session)
        export(session, platform.ledger, tmp_path / "out")
    text, _ = open_note(note.encode(), [parse_verifier_key(key)])
    assert Checkpoint.parse(text).size == platform.ledger.size(platform.session())
    report = verify_export(tmp_path / "out", [key])
    assert report.ok, report.problem
    platform.engine.dispose()
