"""One suite for every ledger storage backend (memory, SQLite, PostgreSQL): Trillian's habit.

Each case runs on each backend through the `backend` fixture; cases that need two
writers in flight at once run only where the backend allows it (SQLite takes its
write lock at BEGIN, so its sealers never interleave).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert
from sqlalchemy.orm import sessionmaker

from audit.verify import verify_export
from crypto import SignatureAlgorithm, generate_key_pair
from gateway.platform import PlatformSession, make_engine
from ledger import (
    MAX_INDEX,
    BlockConflict,
    BlockNotFound,
    Checkpoint,
    Ed25519LedgerSigner,
    EntryNotFound,
    InvalidRange,
    Ledger,
    LedgerBase,
    LedgerConfig,
    LedgerRecord,
    LogStore,
    LogTransaction,
    MemoryLogStorage,
    NewLeaf,
    SealedBlock,
    Sealer,
    SqlLogStore,
    TileRace,
    export,
    hasher,
    open_note,
    parse_verifier_key,
    root,
    verify_consistency,
    verify_inclusion,
)
from ledger.models import LedgerSequence
from tests.conftest import login

ORIGIN = "pdx.test/ledger-storage"
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
RFC = json.loads((Path(__file__).parent / "vectors" / "rfc6962_merkle.json").read_text())
H = hasher("sha256")
SIGNER = Ed25519LedgerSigner(ORIGIN, generate_key_pair(SignatureAlgorithm.ED25519))


@dataclass
class Backend:
    """One storage backend: how to open a transaction on it, and what it supports."""

    name: str
    transaction: Callable[[], AbstractContextManager[LogTransaction]]
    concurrent_writers: bool
    ledger: Ledger

    def store(self, tx: LogTransaction) -> LogStore:
        return self.ledger.store(tx)


def _sql_backend(name: str, url: str) -> Iterator[Backend]:
    engine = make_engine(url)
    LedgerBase.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(LedgerSequence).values(id=1, size=0))
    sessions = sessionmaker(engine, class_=PlatformSession, expire_on_commit=False)

    @contextmanager
    def transaction() -> Iterator[LogTransaction]:
        with sessions() as session, session.begin():
            yield session

    yield Backend(name, transaction, name != "sqlite", Ledger(LedgerConfig(ORIGIN)))
    engine.dispose()


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "memory":
        storage = MemoryLogStorage()
        yield Backend("memory", storage.transaction, True, Ledger(LedgerConfig(ORIGIN)))
    elif request.param == "sqlite":
        yield from _sql_backend("sqlite", f"sqlite:///{tmp_path / 'ledger.db'}")
    else:
        yield from _sql_backend("postgres", request.getfixturevalue("postgres_url"))


def record(i: int, type: str = "test.appended") -> LedgerRecord:
    return LedgerRecord(
        type=type,
        action="append",
        object_type="test",
        object_id=f"obj-{i % 7}",
        actor="tester",
        subject_org=None,
        decision_id=None,
        purpose=None,
        request_id=None,
        payload_digest=None,
        ts=NOW,
    )


def append(backend: Backend, count: int, batch: int = 50) -> None:
    done = 0
    while done < count:
        n = min(batch, count - done)
        with backend.transaction() as tx:
            backend.ledger.append_many(tx, [record(done + i) for i in range(n)])
        done += n


def seal(backend: Backend) -> SealedBlock | None:
    with backend.transaction() as tx:
        return backend.ledger.seal(tx, SIGNER, now=NOW)


def check_log(backend: Backend) -> int:
    """Every block: root over its leaves, hash link, signed checkpoint; returns the size."""
    verifier = parse_verifier_key(SIGNER.verifier_key())
    with backend.transaction() as tx:
        blocks = backend.ledger.blocks(tx, 0, 1000)
        size = blocks[-1].block.tree_size if blocks else 0
        leaves = backend.ledger.entries(tx, start=0, end=size, limit=1000)
    assert [e.index for e in leaves] == list(range(size))
    hashes = [H.leaf(e.leaf) for e in leaves]
    prev = None
    for height, sealed in enumerate(blocks):
        block = sealed.block
        assert block.height == height
        assert block.root == root(H, hashes[: block.tree_size])
        if prev is not None:
            assert block.first_index == prev.tree_size
            assert block.prev_block_hash == prev.block_hash(H.digest)
        text, _ = open_note(sealed.checkpoint.encode(), [verifier])
        assert Checkpoint.parse(text) == Checkpoint(ORIGIN, block.tree_size, block.root)
        prev = block
    return size


# -- leaves ---------------------------------------------------------------------------------


def test_appends_are_dense_and_a_rollback_returns_its_indexes(backend: Backend) -> None:
    append(backend, 120, batch=40)
    with pytest.raises(RuntimeError), backend.transaction() as tx:
        assert backend.ledger.append_many(tx, [record(0), record(1)]) == 120
        raise RuntimeError("the operation failed after appending")
    with backend.transaction() as tx:
        assert backend.ledger.append(tx, record(120)) == 120
        assert backend.ledger.size(tx) == 121
    with backend.transaction() as tx:
        found = backend.ledger.entries(tx, start=0, limit=1000)
        assert [e.index for e in found] == list(range(121))
        assert found[7].leaf == record(7).leaf()
        assert backend.ledger.entry(tx, 120).leaf == record(120).leaf()


def test_entries_filter_by_type_and_object_and_page(backend: Backend) -> None:
    with backend.transaction() as tx:
        backend.ledger.append_many(
            tx, [record(i, "test.even" if i % 2 == 0 else "test.odd") for i in range(30)]
        )
    with backend.transaction() as tx:
        odd = backend.ledger.entries(tx, type="test.odd")
        assert [e.index for e in odd] == list(range(1, 30, 2))
        obj = backend.ledger.entries(tx, object_id="obj-3", start=4, end=25)
        assert [e.index for e in obj] == [10, 17, 24]
        page = backend.ledger.entries(tx, start=5, limit=3)
        assert [e.index for e in page] == [5, 6, 7]
        assert backend.ledger.entries(tx, start=30) == []
        with pytest.raises(InvalidRange):
            backend.ledger.entries(tx, start=5, end=4)


def test_indexes_beyond_bigint_name_nothing_stored(backend: Backend) -> None:
    """Issue 12: huge integers in ledger paths gave 500 (the driver overflowed)."""
    append(backend, 3)
    seal(backend)
    with backend.transaction() as tx:
        for huge in (MAX_INDEX, MAX_INDEX + 1, 2**64, 10**30):
            with pytest.raises(EntryNotFound):
                backend.ledger.entry(tx, huge)
            with pytest.raises(BlockNotFound):
                backend.ledger.block(tx, huge)
            with pytest.raises(BlockNotFound):
                backend.ledger.block_for(tx, huge)
            with pytest.raises(InvalidRange):
                backend.ledger.inclusion_proof(tx, 0, huge)
            with pytest.raises(InvalidRange):
                backend.ledger.consistency_proof(tx, 1, huge)
            assert backend.ledger.entries(tx, start=huge) == []
            assert backend.ledger.blocks(tx, huge, huge + 1) == []
        assert len(backend.ledger.entries(tx, start=0, end=10**30)) == 3
        assert len(backend.ledger.blocks(tx, 0, 10**30)) == 1


# -- sealing and proofs from stored tiles ---------------------------------------------------


def test_rfc9162_vectors_from_stored_tiles(backend: Backend) -> None:
    """Seal the RFC 6962/9162 reference leaves one block each; proofs come from the tiles."""
    for leaf_hex in RFC["leaves"]:
        with backend.transaction() as tx:
            backend.store(tx).append_leaves([NewLeaf(bytes.fromhex(leaf_hex), "rfc.leaf", None)])
        seal(backend)
    with backend.transaction() as tx:
        roots = [b.block.root.hex() for b in backend.ledger.blocks(tx, 0, 100)]
        assert roots == RFC["roots"]
        for case in RFC["inclusion"]:
            proof = backend.ledger.inclusion_proof(tx, case["index"], case["tree_size"])
            assert [p.hex() for p in proof] == case["proof"]
        for case in RFC["consistency"]:
            proof = backend.ledger.consistency_proof(tx, case["first"], case["second"])
            assert [p.hex() for p in proof] == case["proof"]


def test_blocks_over_many_tiles_prove_every_size(backend: Backend) -> None:
    sizes = []
    for count in (1, 255, 1, 300, 0, 190):  # crosses the 256- and 512-leaf tile edges
        append(backend, count, batch=97)
        sealed = seal(backend)
        if sealed is not None:
            sizes.append((sealed.block.tree_size, sealed.block.root))
    assert [s for s, _ in sizes] == [1, 256, 257, 557, 747]
    assert check_log(backend) == 747
    with backend.transaction() as tx:
        leaves = [H.leaf(e.leaf) for e in backend.ledger.entries(tx, start=0, limit=1000)]
        for size, tree_root in sizes:
            for index in {0, size // 2, size - 1}:
                proof = backend.ledger.inclusion_proof(tx, index, size)
                verify_inclusion(H, index, size, leaves[index], proof, tree_root)
        for first, first_root in sizes:
            for second, second_root in sizes:
                if first <= second:
                    proof = backend.ledger.consistency_proof(tx, first, second)
                    verify_consistency(H, first, second, first_root, second_root, proof)
        with pytest.raises(InvalidRange):
            backend.ledger.inclusion_proof(tx, 0, 748)  # beyond the newest checkpoint


def test_export_from_any_backend_verifies_offline(backend: Backend, tmp_path: Path) -> None:
    append(backend, 300)
    seal(backend)
    append(backend, 10)
    seal(backend)
    with backend.transaction() as tx:
        summary = export(tx, backend.ledger, tmp_path / "out")
    assert summary.tree_size == 310 and summary.blocks == 2
    report = verify_export(tmp_path / "out", [SIGNER.verifier_key()])
    assert report.ok, report.problem


# -- compare-and-set: the sealer race -------------------------------------------------------


def test_a_tile_write_from_a_stale_view_is_refused(backend: Backend) -> None:
    with backend.transaction() as tx:
        backend.store(tx).write_tile(0, 0, b"a" * 64, stored=0)
    with pytest.raises(TileRace), backend.transaction() as tx:
        backend.store(tx).write_tile(0, 0, b"b" * 96, stored=32)  # believes 1 hash stored
    with pytest.raises(TileRace), backend.transaction() as tx:
        backend.store(tx).write_tile(0, 0, b"c" * 32, stored=0)  # believes no tile
    with backend.transaction() as tx:
        backend.store(tx).write_tile(0, 0, b"d" * 96, stored=64)
    with backend.transaction() as tx:
        assert backend.store(tx).read_tile(0, 0) == b"d" * 96
        assert list(backend.store(tx).tiles()) == [(0, 0, b"d" * 96)]


def test_a_block_height_is_sealed_once(backend: Backend) -> None:
    sealed = seal(backend)
    assert sealed is not None
    with pytest.raises(BlockConflict), backend.transaction() as tx:
        backend.store(tx).add_block(sealed, b"h" * 32)
    assert check_log(backend) == 0


class RacingStore:
    """A `LogStore` whose first tile read lets a competing sealer seal and commit first.

    That is issue 13's race: our view (the latest block) was taken before the other
    sealer committed, our tile reads come after.
    """

    def __init__(self, inner: LogStore, compete: Callable[[], None]) -> None:
        self._inner = inner
        self._compete: Callable[[], None] | None = compete

    def read_tile(self, level: int, idx: int) -> bytes:
        if self._compete is not None:
            compete, self._compete = self._compete, None
            compete()
        return self._inner.read_tile(level, idx)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_sealer_that_loses_a_tile_race_retries(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    if not backend.concurrent_writers:
        pytest.skip(f"{backend.name} serialises writers: its sealers cannot interleave")
    append(backend, 10)
    seal(backend)
    append(backend, 20)
    competitor = Sealer(backend.ledger, backend.transaction, lambda tx: SIGNER, lambda: NOW)
    raced = threading.Event()

    def compete() -> None:
        # Another thread, as another process would be: it commits while we wait.
        thread = threading.Thread(target=competitor.seal_now)
        thread.start()
        thread.join()
        raced.set()

    @contextmanager
    def racing() -> Iterator[LogStore]:
        with backend.transaction() as tx:
            store = backend.store(tx)
            yield store if raced.is_set() else RacingStore(store, compete)

    sealer = Sealer(backend.ledger, racing, lambda tx: SIGNER, lambda: NOW + timedelta(1))
    with caplog.at_level(logging.INFO, logger="ledger.sealer"):
        assert sealer.seal_now() == []  # the competitor sealed everything
    assert raced.is_set()
    assert "ledger seal retried: TileRace" in caplog.text
    append(backend, 5)
    assert [b.block.tree_size for b in sealer.seal_now()] == [35]
    assert check_log(backend) == 35


def test_concurrent_appenders_and_sealers_keep_one_valid_log(backend: Backend) -> None:
    errors: list[BaseException] = []
    sealers = [
        Sealer(backend.ledger, backend.transaction, lambda tx: SIGNER, lambda: NOW)
        for _ in range(2)
    ]
    done = threading.Event()

    def appender(worker: int) -> None:
        try:
            for i in range(15):
                with backend.transaction() as tx:
                    backend.ledger.append_many(tx, [record(worker * 100 + i)] * 3)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def sealing(sealer: Sealer) -> None:
        try:
            while not done.is_set():
                sealer.seal_now()
        except BaseException as exc:
            errors.append(exc)

    appenders = [threading.Thread(target=appender, args=(w,)) for w in range(4)]
    seal_threads = [threading.Thread(target=sealing, args=(s,)) for s in sealers]
    for thread in appenders + seal_threads:
        thread.start()
    for thread in appenders:
        thread.join()
    done.set()
    for thread in seal_threads:
        thread.join()
    assert errors == []
    sealers[0].seal_now()
    assert check_log(backend) == 4 * 15 * 3
    with backend.transaction() as tx:
        leaves = sorted(e.leaf for e in backend.ledger.entries(tx, start=0, limit=1000))
    expected = [record(w * 100 + i).leaf() for w in range(4) for i in range(15) for _ in range(3)]
    assert leaves == sorted(expected)


def test_sql_store_is_the_session_wrapper(backend: Backend) -> None:
    """A session and its `SqlLogStore` are interchangeable in every `Ledger` call."""
    if backend.name == "memory":
        pytest.skip("SQL backends only")
    with backend.transaction() as tx:
        store = backend.store(tx)
        assert isinstance(store, SqlLogStore)
        backend.ledger.append(store, record(1))
        assert backend.ledger.size(tx) == 1


def test_huge_ledger_indexes_are_client_errors_through_the_api(
    api: TestClient, creds: dict[str, dict[str, Any]]
) -> None:
    """Issue 12: `/v1/ledger/entries/<huge>` and friends answered 500 (driver overflow)."""
    auditor = login(api, creds, "auditor")
    huge = str(10**30)
    for path in (
        f"/v1/ledger/entries/{huge}",
        f"/v1/ledger/entries?start={huge}",
        f"/v1/ledger/proof/inclusion?index=0&tree_size={huge}",
        f"/v1/ledger/proof/consistency?first=0&second={huge}",
        f"/v1/ledger/blocks/{huge}",
        f"/v1/ledger/blocks?start={huge}",
    ):
        response = api.get(path, headers=auditor)
        assert response.status_code < 500, (path, response.status_code, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")
