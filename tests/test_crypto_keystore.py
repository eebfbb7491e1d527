"""Tests for the key hierarchy: root key files, data and signing keys, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy import Engine, event, func, select, update
from sqlalchemy.orm import Session

from crypto import (
    CryptoBase,
    DataKey,
    InvalidCiphertext,
    KeyNotFound,
    KeyPurpose,
    KeyPurposeMismatch,
    KeyStore,
    KeyStoreUnavailable,
    LocalRootKey,
    RootKeyBackend,
    SigningKey,
)
from crypto.models import DataKeyRecord, KeyRecord
from tests.helpers.db import BACKENDS, metadata_engine
from tests.helpers.net import flip as _flip

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
VECTORS = Path(__file__).parent / "vectors"


# -- fixtures: the same tests on SQLite and PostgreSQL (STYLE habit 4) ----------------------


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from metadata_engine(request, tmp_path, CryptoBase.metadata, "keys")


@pytest.fixture
def root_path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "root.key"


@pytest.fixture
def keystore(root_path: Path) -> KeyStore:
    return KeyStore(LocalRootKey.create_or_load(root_path))


def _count(engine: Engine, model: type[KeyRecord] | type[DataKeyRecord]) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def _new(keystore: KeyStore, engine: Engine, org: str = "org-a", ref: str = "dataset:1") -> Any:
    with Session(engine) as session:
        data_key = keystore.new_data_key(session, owner_org=org, object_ref=ref, now=NOW)
        session.commit()
    return data_key


# -- data keys --------------------------------------------------------------------------------


def test_data_key_round_trip(keystore: KeyStore, engine: Engine) -> None:
    data_key = _new(keystore, engine)
    assert len(data_key.key) == 32
    assert data_key.object_ref == "dataset:1"
    with Session(engine) as session:
        assert keystore.data_key(session, data_key.id, object_ref="dataset:1") == data_key.key
        record = session.get(DataKeyRecord, data_key.id)
        assert record is not None
        assert data_key.key not in record.wrapped
        stored = record.created_at  # SQLite hands back naive UTC, PostgreSQL aware
        assert (stored if stored.tzinfo else stored.replace(tzinfo=UTC)) == NOW


def test_generated_data_key_exists_only_once_stored(keystore: KeyStore, engine: Engine) -> None:
    data_key = keystore.generate_data_key(object_ref="dataset:9")
    assert len(data_key.key) == 32 and data_key.object_ref == "dataset:9"
    assert keystore.generate_data_key(object_ref="dataset:9").key != data_key.key
    with Session(engine) as session:
        with pytest.raises(KeyNotFound):
            keystore.data_key(session, data_key.id, object_ref="dataset:9")
    assert _count(engine, KeyRecord) == _count(engine, DataKeyRecord) == 0
    with Session(engine) as session:
        keystore.store_data_key(session, data_key, owner_org="org-a", now=NOW)
        session.commit()
    with Session(engine) as session:
        assert keystore.data_key(session, data_key.id, object_ref="dataset:9") == data_key.key
        with pytest.raises(ValueError):
            short = DataKey(id=str(uuid.uuid4()), key=bytes(16), object_ref="dataset:9")
            keystore.store_data_key(session, short, owner_org="org-a", now=NOW)


def test_data_key_repr_hides_the_key(keystore: KeyStore, engine: Engine) -> None:
    data_key = _new(keystore, engine)
    shown = repr(data_key) + str(data_key)
    assert data_key.id in shown
    assert data_key.key.hex() not in shown and repr(data_key.key) not in shown


def test_kek_is_created_once_per_org_and_reused(keystore: KeyStore, engine: Engine) -> None:
    first = _new(keystore, engine, ref="dataset:1")
    second = _new(keystore, engine, ref="dataset:2")
    assert first.key != second.key
    with Session(engine) as session:
        rows = session.scalars(select(KeyRecord)).all()
        assert len(rows) == 1
        kek = rows[0]
        assert (kek.purpose, kek.algorithm, kek.owner_org, kek.state, kek.version) == (
            "key-wrapping",
            "AES-256-GCM",
            "org-a",
            "active",
            1,
        )
        assert kek.public_material is None
        assert kek.parent_id is not None and kek.parent_id.startswith("local:")
        records = session.scalars(select(DataKeyRecord)).all()
        assert {(r.kek_id, r.kek_version) for r in records} == {(kek.id, 1)}


def test_different_orgs_get_different_keks(keystore: KeyStore, engine: Engine) -> None:
    a = _new(keystore, engine, org="org-a", ref="dataset:1")
    b = _new(keystore, engine, org="org-b", ref="dataset:1")
    with Session(engine) as session:
        record_a = session.get(DataKeyRecord, a.id)
        record_b = session.get(DataKeyRecord, b.id)
        assert record_a is not None and record_b is not None
        assert record_a.kek_id != record_b.kek_id
        assert _count(engine, KeyRecord) == 2
        # Org A's data key re-pointed at org B's KEK does not unwrap.
        record_a.kek_id = record_b.kek_id
        session.flush()
        with pytest.raises(InvalidCiphertext):
            keystore.data_key(session, a.id, object_ref="dataset:1")


def test_rollback_leaves_no_key_rows(keystore: KeyStore, engine: Engine) -> None:
    with Session(engine) as session:
        keystore.new_data_key(session, owner_org="org-a", object_ref="dataset:1", now=NOW)
        keystore.signing_key(session, purpose=KeyPurpose.TOKEN_SIGNING, now=NOW)
        # The keystore only flushes: nothing is visible to anyone else yet ...
        assert _count(engine, KeyRecord) == 0
        assert _count(engine, DataKeyRecord) == 0
        session.rollback()
    # ... and the caller's rollback removes everything, the new KEK included.
    assert _count(engine, KeyRecord) == 0
    assert _count(engine, DataKeyRecord) == 0


def test_wrong_object_ref_is_invalid_ciphertext(keystore: KeyStore, engine: Engine) -> None:
    data_key = _new(keystore, engine, ref="dataset:1")
    with Session(engine) as session:
        for wrong in ("dataset:2", "dataset:1 ", ""):
            with pytest.raises(InvalidCiphertext):
                keystore.data_key(session, data_key.id, object_ref=wrong)


@pytest.mark.parametrize("position", [0, 1, 13, -1])
def test_tampered_data_key_blob(keystore: KeyStore, engine: Engine, position: int) -> None:
    data_key = _new(keystore, engine)
    with Session(engine) as session:
        record = session.get(DataKeyRecord, data_key.id)
        assert record is not None
        record.wrapped = _flip(record.wrapped, position)
        session.commit()
        with pytest.raises(InvalidCiphertext):
            keystore.data_key(session, data_key.id, object_ref="dataset:1")


@pytest.mark.parametrize("column", ["wrapped_material", "owner_org", "algorithm"])
def test_tampered_kek_row(keystore: KeyStore, engine: Engine, column: str) -> None:
    data_key = _new(keystore, engine)
    with Session(engine) as session:
        kek = session.scalars(select(KeyRecord)).one()
        changed: dict[str, Any] = {
            "wrapped_material": _flip(kek.wrapped_material, -3),
            "owner_org": "org-b",
            "algorithm": "AES-128-GCM",
        }
        session.execute(update(KeyRecord).values({column: changed[column]}))
        session.commit()
    with Session(engine) as session:
        with pytest.raises(InvalidCiphertext):
            keystore.data_key(session, data_key.id, object_ref="dataset:1")


def test_unknown_and_deleted_data_keys(keystore: KeyStore, engine: Engine) -> None:
    data_key = _new(keystore, engine)
    with Session(engine) as session:
        with pytest.raises(KeyNotFound):
            keystore.data_key(session, str(uuid.uuid4()), object_ref="dataset:1")
        with pytest.raises(KeyNotFound):
            keystore.delete_data_key(session, str(uuid.uuid4()))
        keystore.delete_data_key(session, data_key.id)
        with pytest.raises(KeyNotFound):
            keystore.data_key(session, data_key.id, object_ref="dataset:1")
        session.commit()
    assert _count(engine, DataKeyRecord) == 0
    assert _count(engine, KeyRecord) == 1


def test_data_key_under_a_non_wrapping_key_is_a_purpose_mismatch(
    keystore: KeyStore, engine: Engine
) -> None:
    data_key = _new(keystore, engine)
    with Session(engine) as session:
        signing = keystore.signing_key(session, purpose="signing", now=NOW)
        record = session.get(DataKeyRecord, data_key.id)
        assert record is not None
        record.kek_id, record.kek_version = signing.key_id, signing.version
        session.flush()
        with pytest.raises(KeyPurposeMismatch):
            keystore.data_key(session, data_key.id, object_ref="dataset:1")


def test_naive_time_and_bad_refs_are_refused(keystore: KeyStore, engine: Engine) -> None:
    with Session(engine) as session:
        with pytest.raises(ValueError):
            keystore.new_data_key(
                session, owner_org="o", object_ref="r", now=datetime(2025, 1, 1, 0, 0)
            )
        with pytest.raises(ValueError):
            keystore.new_data_key(session, owner_org="", object_ref="r", now=NOW)
        with pytest.raises(ValueError):
            keystore.new_data_key(session, owner_org="o", object_ref="r" * 256, now=NOW)
        with pytest.raises(ValueError):
            keystore.signing_key(session, purpose="signing", now=datetime(2025, 1, 1))


def test_concurrent_first_use_ends_with_one_kek(keystore: KeyStore, engine: Engine) -> None:
    """Transaction B looks for the org's KEK while A has created it but not committed.

    B finds nothing, inserts the same deterministic (id, version), waits for A, and on
    A's commit takes A's KEK instead of failing or making a second one.
    """
    b_inserting = threading.Event()
    b_thread: list[int] = []
    results: dict[str, Any] = {}

    @event.listens_for(engine, "before_cursor_execute")
    def watch(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.get_ident() in b_thread and statement.startswith("INSERT INTO crypto_keys"):
            b_inserting.set()

    def transaction_b() -> None:
        b_thread.append(threading.get_ident())
        try:
            with Session(engine) as b:
                results["key"] = keystore.new_data_key(
                    b, owner_org="org-a", object_ref="dataset:b", now=NOW
                )
                b.commit()
        except BaseException as error:  # reported to the main thread below
            results["error"] = error

    with Session(engine) as a:
        key_a = keystore.new_data_key(a, owner_org="org-a", object_ref="dataset:a", now=NOW)
        thread = threading.Thread(target=transaction_b)
        thread.start()
        assert b_inserting.wait(10), "B never tried to insert the KEK"
        time.sleep(0.3)  # B is now blocked on A's uncommitted row (or SQLite's write lock)
        assert thread.is_alive()
        a.commit()
    thread.join(20)
    assert "error" not in results, results.get("error")
    key_b = results["key"]
    assert _count(engine, KeyRecord) == 1
    with Session(engine) as session:
        assert keystore.data_key(session, key_a.id, object_ref="dataset:a") == key_a.key
        assert keystore.data_key(session, key_b.id, object_ref="dataset:b") == key_b.key


# -- signing keys -----------------------------------------------------------------------------


def test_signing_key_is_created_once_and_stable_across_keystores(
    root_path: Path, engine: Engine
) -> None:
    first_store = KeyStore(LocalRootKey.create_or_load(root_path))
    with Session(engine) as session:
        first = first_store.signing_key(session, purpose="token-signing", now=NOW)
        session.commit()
    second_store = KeyStore(LocalRootKey.create_or_load(root_path))
    with Session(engine) as session:
        second = second_store.signing_key(session, purpose=KeyPurpose.TOKEN_SIGNING, now=NOW)
        assert second_store.public_jwks(session, purpose="token-signing") == [first.public_jwk()]
    assert second.kid == first.kid == first.public_jwk()["kid"]
    assert (second.key_id, second.version, second.purpose) == (first.key_id, 1, "token-signing")
    token = jwt.encode({"sub": "client-1"}, first.private_key, "EdDSA", headers={"kid": first.kid})
    verifier = jwt.PyJWK(second.public_jwk()).key
    assert jwt.decode(token, verifier, algorithms=["EdDSA"]) == {"sub": "client-1"}
    assert jwt.get_unverified_header(token)["kid"] == second.kid
    assert _count(engine, KeyRecord) == 1


def test_signing_keys_are_separate_per_purpose(keystore: KeyStore, engine: Engine) -> None:
    with Session(engine) as session:
        token = keystore.signing_key(session, purpose="token-signing", now=NOW)
        ledger = keystore.signing_key(session, purpose="ledger-signing", now=NOW)
        assert token.kid != ledger.kid
        assert keystore.public_jwks(session, purpose="ledger-signing") == [ledger.public_jwk()]
        assert keystore.public_jwks(session, purpose="signing") == []


def test_public_jwk_shape(keystore: KeyStore, engine: Engine) -> None:
    with Session(engine) as session:
        jwk = keystore.signing_key(session, purpose="signing", now=NOW).public_jwk()
    assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert len(base64.urlsafe_b64decode(jwk["x"] + "=")) == 32
    assert "d" not in jwk


@pytest.mark.parametrize("purpose", ["data-encryption", "key-wrapping", "tls-ca", "bogus", ""])
def test_non_signing_purposes_are_refused(keystore: KeyStore, engine: Engine, purpose: str) -> None:
    with Session(engine) as session:
        with pytest.raises(KeyPurposeMismatch):
            keystore.signing_key(session, purpose=purpose, now=NOW)
        with pytest.raises(KeyPurposeMismatch):
            keystore.public_jwks(session, purpose=purpose)


def test_public_jwks_refuses_a_key_slipped_into_the_database(
    keystore: KeyStore, engine: Engine
) -> None:
    with Session(engine) as session:
        genuine = keystore.signing_key(session, purpose="token-signing", now=NOW)
        row = session.get(KeyRecord, (genuine.key_id, 1))
        assert row is not None
        # Someone with write access to the table adds "version 2" with their own key.
        forged = SigningKey.from_private_bytes(
            os.urandom(32), key_id=genuine.key_id, version=2, purpose=KeyPurpose.TOKEN_SIGNING
        )
        session.add(
            KeyRecord(
                id=genuine.key_id,
                version=2,
                purpose="token-signing",
                algorithm="Ed25519",
                owner_org=None,
                state="active",
                wrapped_material=row.wrapped_material,
                public_material=base64.urlsafe_b64decode(forged.public_jwk()["x"] + "="),
                parent_id=row.parent_id,
                created_at=NOW,
            )
        )
        session.flush()
        with pytest.raises(InvalidCiphertext):
            keystore.public_jwks(session, purpose="token-signing")
        with pytest.raises(InvalidCiphertext):
            keystore.signing_key(session, purpose="token-signing", now=NOW)


def test_tampered_public_material_is_refused(keystore: KeyStore, engine: Engine) -> None:
    with Session(engine) as session:
        genuine = keystore.signing_key(session, purpose="token-signing", now=NOW)
        row = session.get(KeyRecord, (genuine.key_id, 1))
        assert row is not None and row.public_material is not None
        row.public_material = _flip(row.public_material, 0)
        session.flush()
        with pytest.raises(InvalidCiphertext):
            keystore.signing_key(session, purpose="token-signing", now=NOW)
        with pytest.raises(InvalidCiphertext):
            keystore.public_jwks(session, purpose="token-signing")


def test_keys_under_another_root_key_are_unavailable(
    keystore: KeyStore, engine: Engine, tmp_path: Path
) -> None:
    data_key = _new(keystore, engine)
    other = KeyStore(LocalRootKey.create_or_load(tmp_path / "other" / "root.key"))
    with Session(engine) as session:
        with pytest.raises(KeyStoreUnavailable):
            other.data_key(session, data_key.id, object_ref="dataset:1")


def test_rfc8037_ed25519_jwk_thumbprint_and_signature() -> None:
    vector = json.loads((VECTORS / "ed25519_rfc8037.json").read_text())
    key = SigningKey.from_private_bytes(
        base64.urlsafe_b64decode(vector["private_d"] + "="),
        key_id="rfc8037",
        version=1,
        purpose=KeyPurpose.SIGNING,
    )
    assert key.public_jwk()["x"] == vector["public_x"]
    # RFC 7638 thumbprint over {"crv","kty","x"}, which RFC 8037 A.3 gives for this key.
    assert key.kid == vector["thumbprint"]
    # Ed25519 is deterministic: the JWS of A.4 comes out byte for byte.
    payload = vector["jws_payload_ascii"].encode("ascii")
    jws = jwt.api_jws.encode(payload, key.private_key, algorithm="EdDSA", headers={"typ": None})
    assert jws == vector["jws_compact"]


# -- the root key file ------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_root_key_file_is_created_0600_in_a_0700_directory(root_path: Path) -> None:
    root = LocalRootKey.create_or_load(root_path)
    assert _mode(root_path) == 0o600
    assert _mode(root_path.parent) == 0o700
    assert root_path.stat().st_size == 32
    assert LocalRootKey.load(root_path).key_id == root.key_id
    assert LocalRootKey.create_or_load(root_path).key_id == root.key_id
    assert os.listdir(root_path.parent) == ["root.key"]  # no temporary file left behind
    assert root_path.read_bytes().hex() not in repr(root)


def test_root_key_is_0600_even_under_a_lax_umask(root_path: Path) -> None:
    previous = os.umask(0)
    try:
        LocalRootKey.create_or_load(root_path)
    finally:
        os.umask(previous)
    assert _mode(root_path) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o610])
def test_root_key_file_open_to_group_or_others_is_refused(root_path: Path, mode: int) -> None:
    LocalRootKey.create_or_load(root_path)
    root_path.chmod(mode)
    for opener in (LocalRootKey.load, LocalRootKey.create_or_load):
        with pytest.raises(KeyStoreUnavailable, match="group or others"):
            opener(root_path)


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_root_key_file_of_wrong_size_is_refused(root_path: Path, size: int) -> None:
    root_path.parent.mkdir(mode=0o700)
    root_path.write_bytes(os.urandom(size))
    root_path.chmod(0o600)
    with pytest.raises(KeyStoreUnavailable, match="32 bytes"):
        LocalRootKey.create_or_load(root_path)


def test_missing_or_unusable_root_key_file(root_path: Path) -> None:
    with pytest.raises(KeyStoreUnavailable, match="does not exist"):
        LocalRootKey.load(root_path)
    root_path.mkdir(parents=True, mode=0o700)
    with pytest.raises(KeyStoreUnavailable):
        LocalRootKey.create_or_load(root_path)  # a directory where the file should be


def test_root_key_wrap_binds_aad_and_detects_tampering() -> None:
    root: RootKeyBackend = LocalRootKey(os.urandom(32))
    blob = root.wrap(b"secret key material", b"context")
    assert b"secret key material" not in blob
    assert root.unwrap(blob, b"context") == b"secret key material"
    for bad_blob, aad in [
        (blob, b"other context"),
        (_flip(blob, 0), b"context"),
        (_flip(blob, 5), b"context"),
        (_flip(blob, len(blob) - 1), b"context"),
        (blob[:-1], b"context"),
        (b"", b"context"),
    ]:
        with pytest.raises(InvalidCiphertext):
            root.unwrap(bad_blob, aad)
    with pytest.raises(InvalidCiphertext):
        LocalRootKey(os.urandom(32)).unwrap(blob, b"context")


def _create_in_thread(path: Path, barrier: threading.Barrier, ids: list[str]) -> None:
    barrier.wait()
    ids.append(LocalRootKey.create_or_load(path).key_id)


def test_root_key_concurrent_creation_in_threads_ends_with_one_key(tmp_path: Path) -> None:
    for attempt in range(5):
        path = tmp_path / f"run{attempt}" / "root.key"
        barrier = threading.Barrier(16)
        ids: list[str] = []

        threads = [
            threading.Thread(target=_create_in_thread, args=(path, barrier, ids)) for _ in range(16)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(ids) == 16 and len(set(ids)) == 1
        assert LocalRootKey.load(path).key_id == ids[0]
        assert os.listdir(path.parent) == ["root.key"]


def _create_in_child(path: str, barrier: Any, queue: Any) -> None:
    barrier.wait()
    queue.put(LocalRootKey.create_or_load(Path(path)).key_id)


def test_root_key_concurrent_creation_in_processes_ends_with_one_key(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    path = tmp_path / "keys" / "root.key"
    barrier = context.Barrier(8)
    queue = context.Queue()
    processes = [
        context.Process(target=_create_in_child, args=(str(path), barrier, queue)) for _ in range(8)
    ]
    for process in processes:
        process.start()
    ids = [queue.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    assert len(set(ids)) == 1
    assert LocalRootKey.load(path).key_id == ids[0]
