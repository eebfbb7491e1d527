"""The KMS suite: one set of tests over both root backends (local, pkcs11) and both databases."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pkcs11
import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session

from crypto.backends import RootKeyBackend
from crypto.backends.local import LocalRootKey
from crypto.backends.pkcs11 import Pkcs11Config, Pkcs11RootKey
from crypto.backup import (
    create_recovery_key,
    export_backup,
    restore_backup,
    share_from_text,
)
from crypto.errors import (
    BackupInvalid,
    DestroyRequestInvalid,
    DualControlViolation,
    HsmUnavailable,
    InconsistentShares,
    InvalidCiphertext,
    KeyAlgorithmMismatch,
    KeyDestroyed,
    KeyExpired,
    KeyNotActive,
    KeyNotFound,
    KeyPurposeMismatch,
    KeyRoleDenied,
    KeyStateTransitionInvalid,
    KeyStoreUnavailable,
    KeySuspended,
    RootKeyPassphraseInvalid,
    TooFewShares,
)
from crypto.events import KeyEvent, KeyOperation
from crypto.keystore import KeyStore
from crypto.kms import KeyManager
from crypto.lifecycle import TRANSITIONS, KeyPurpose, KeyState, RotationPolicy, check_transition
from crypto.models import CryptoBase, DataKeyRecord, DestroyRequestRecord, KeyRecord
from crypto.roles import KeyActor, KeyRole, KmsAction, require_key_role
from crypto.stream import StreamEncryptor, decrypt_stream
from gateway.platform import database_url

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ADMIN1 = KeyActor("admin-1", frozenset({KeyRole.KEY_ADMINISTRATOR}))
ADMIN2 = KeyActor("admin-2", frozenset({KeyRole.KEY_ADMINISTRATOR}))
OPERATOR = KeyActor("operator-1", frozenset({KeyRole.CRYPTO_OPERATOR}))
AUDITOR = KeyActor("auditor-1", frozenset({KeyRole.CRYPTO_AUDITOR}))
PASSPHRASE = "correct horse battery staple"


# -- fixtures: every test runs on local × pkcs11 and SQLite × PostgreSQL ----------------


def _new_engine(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Engine:
    if request.node.callspec.params["database"] == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / name}.db")
    else:
        base = os.environ["PDX_TEST_POSTGRES_URL"]
        admin = create_engine(database_url(base), isolation_level="AUTOCOMMIT")
        db = f"pdx_kms_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db}"'))

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            admin.dispose()

        request.addfinalizer(drop)
        engine = create_engine(database_url(base.rpartition("/")[0] + "/" + db))
    CryptoBase.metadata.create_all(engine)
    request.addfinalizer(engine.dispose)
    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_engine(
    request: pytest.FixtureRequest, tmp_path: Path, database: str
) -> Callable[[str], Engine]:
    return lambda name: _new_engine(request, tmp_path, name)


@pytest.fixture
def engine(new_engine: Callable[[str], Engine]) -> Engine:
    return new_engine("keys")


@pytest.fixture(params=["local", pytest.param("pkcs11", marks=pytest.mark.hsm)])
def make_root(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[str], RootKeyBackend]]:
    opened: list[Pkcs11RootKey] = []

    def local(name: str) -> RootKeyBackend:
        # A low scrypt cost keeps the suite fast; the default is tested below.
        path = tmp_path / "keys" / f"{name}.key"
        return LocalRootKey.create_or_load(path, PASSPHRASE, scrypt_log2_n=10)

    def hsm(name: str) -> RootKeyBackend:
        config = replace(
            request.getfixturevalue("softhsm"), key_label=f"pdx-{name}-{uuid.uuid4().hex[:8]}"
        )
        backend = Pkcs11RootKey(config)
        opened.append(backend)
        return backend

    yield local if request.param == "local" else hsm
    for backend in opened:
        backend.close()


from tests.conftest import SOFTHSM_MODULE, TOKEN_LABEL, USER_PIN  # noqa: E402, F401


class Recorder:
    """Event sink that keeps every event, and checks it runs inside a transaction."""

    def __init__(self) -> None:
        self.events: list[KeyEvent] = []
        self.fail_when: Callable[[KeyEvent], bool] | None = None

    def __call__(self, session: Session, event: KeyEvent) -> None:
        assert session.in_transaction()
        if self.fail_when is not None and self.fail_when(event):
            raise RuntimeError("audit pipeline down")
        self.events.append(event)

    def ops(self, operation: KeyOperation) -> list[KeyEvent]:
        return [e for e in self.events if e.operation is operation]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def root(make_root: Callable[[str], RootKeyBackend]) -> RootKeyBackend:
    return make_root("root")


@pytest.fixture
def store(root: RootKeyBackend, recorder: Recorder) -> KeyStore:
    return KeyStore(root, events=recorder)


@pytest.fixture
def kms(store: KeyStore) -> KeyManager:
    return KeyManager(store)


def _data_keys(
    store: KeyStore, engine: Engine, n: int, org: str = "org-a", now: datetime = NOW
) -> list[Any]:
    with Session(engine) as session:
        keys = [
            store.new_data_key(session, owner_org=org, object_ref=f"dataset:{i}", now=now)
            for i in range(n)
        ]
        session.commit()
    return keys


def _all_readable(store: KeyStore, engine: Engine, keys: list[Any]) -> None:
    with Session(engine) as session:
        for key in keys:
            assert store.data_key(session, key.id, object_ref=key.object_ref) == key.key


def _states(engine: Engine, key_id: str) -> dict[int, str]:
    with Session(engine) as session:
        rows = session.scalars(select(KeyRecord).where(KeyRecord.id == key_id)).all()
        return {row.version: row.state for row in rows}


def _versions_used(engine: Engine) -> list[int]:
    with Session(engine) as session:
        return sorted(session.scalars(select(DataKeyRecord.kek_version)).all())


# -- pure: transition table and roles ----------------------------------------------------


def test_transition_table_is_explicit_and_destroyed_is_final() -> None:
    expected = {
        ("pre-active", "active"),
        ("pre-active", "compromised"),
        ("pre-active", "destroyed"),
        ("active", "suspended"),
        ("active", "deactivated"),
        ("active", "compromised"),
        ("suspended", "active"),
        ("suspended", "deactivated"),
        ("suspended", "compromised"),
        ("deactivated", "compromised"),
        ("deactivated", "destroyed"),
        ("compromised", "destroyed"),
    }
    for current in KeyState:
        for target in KeyState:
            if (current.value, target.value) in expected:
                check_transition(current.value, target)
            else:
                with pytest.raises(KeyStateTransitionInvalid):
                    check_transition(current.value, target)
    assert TRANSITIONS[KeyState.DESTROYED] == frozenset()
    with pytest.raises(KeyStateTransitionInvalid):
        check_transition("bogus", KeyState.ACTIVE)


def test_roles_and_separation_of_duties() -> None:
    for action in (KmsAction.ROTATE, KmsAction.REQUEST_DESTROY, KmsAction.BACKUP):
        require_key_role(["key-administrator"], action)
        for other in (["crypto-operator"], ["crypto-auditor"], [], ["admin"]):
            with pytest.raises(KeyRoleDenied) as caught:
                require_key_role(other, action)
            assert caught.value.code == "key-role-denied"
    require_key_role(["crypto-auditor", "platform-auditor"], KmsAction.INVENTORY)
    require_key_role(["crypto-auditor"], KmsAction.ROTATION_DUE)
    require_key_role(["crypto-operator"], KmsAction.USE)
    with pytest.raises(KeyRoleDenied):
        require_key_role(["key-administrator"], KmsAction.USE)
    # The auditor holds neither other role: refused whatever the action.
    for combined in (
        ["crypto-auditor", "key-administrator"],
        ["crypto-auditor", "crypto-operator"],
    ):
        with pytest.raises(KeyRoleDenied, match="auditor"):
            require_key_role(combined, KmsAction.INVENTORY)
    with pytest.raises(KeyRoleDenied):
        require_key_role(["key-administrator"], "format-disk")
    assert KeyActor("x", frozenset({"key-administrator", "sysadmin"})).roles == {  # type: ignore[arg-type]
        KeyRole.KEY_ADMINISTRATOR
    }


def test_rotation_policy_validates() -> None:
    with pytest.raises(ValueError):
        RotationPolicy({KeyPurpose.KEY_WRAPPING: timedelta(0)})
    policy = RotationPolicy({KeyPurpose.TOKEN_SIGNING: timedelta(days=1)})
    assert policy.due_at("token-signing", NOW) == NOW + timedelta(days=1)
    assert policy.due_at("key-wrapping", NOW) is None


# -- hierarchy, events, inventory -------------------------------------------------------------


def test_first_use_generates_and_stores_with_events(
    store: KeyStore, engine: Engine, recorder: Recorder, root: RootKeyBackend
) -> None:
    (data_key,) = _data_keys(store, engine, 1)
    kek_id = KeyManager.kek_id("org-a")
    generated = recorder.ops(KeyOperation.GENERATE)
    assert [(e.key_id, e.version, e.purpose, e.algorithm, e.owner_org) for e in generated] == [
        (kek_id, 1, "key-wrapping", "AES-256-GCM", "org-a")
    ]
    stored = recorder.ops(KeyOperation.STORE)
    assert [e.key_id for e in stored] == [kek_id, data_key.id]
    assert stored[1].purpose == "data-encryption" and stored[1].owner_org == "org-a"
    assert stored[0].event_type == "key.stored" and root.key_id in stored[0].detail
    for event in recorder.events:
        assert data_key.key.hex() not in repr(event)
    with Session(engine) as session:
        kek = session.get(KeyRecord, (kek_id, 1))
        assert kek is not None and kek.parent_id == root.key_id
        assert kek.not_before is not None and kek.state_changed_at is not None


def test_failing_event_sink_blocks_the_key_operation(
    store: KeyStore, engine: Engine, recorder: Recorder
) -> None:
    recorder.fail_when = lambda event: event.operation is KeyOperation.STORE
    with Session(engine) as session:
        with pytest.raises(RuntimeError, match="audit pipeline"):
            store.new_data_key(session, owner_org="org-a", object_ref="dataset:1", now=NOW)
        session.rollback()
    with Session(engine) as session:
        assert session.scalars(select(KeyRecord)).all() == []


def test_inventory_lists_root_keks_and_signing_keys(
    store: KeyStore, kms: KeyManager, engine: Engine, root: RootKeyBackend
) -> None:
    _data_keys(store, engine, 2, "org-a")
    _data_keys(store, engine, 1, "org-b")
    with Session(engine) as session:
        store.signing_key(session, purpose="ledger-signing", now=NOW)
        session.commit()
        for actor in (AUDITOR, OPERATOR, ADMIN1):
            entries = kms.inventory(session, by=actor)
        with pytest.raises(KeyRoleDenied):
            kms.inventory(session, by=KeyActor("nobody"))
    assert entries[0].key_id == root.key_id and entries[0].location == root.kind
    assert entries[0].parent_id is None and entries[0].length == 256
    # the root's whole line, in the order `pdx keys list` prints it
    assert list(entries[0].to_public().items()) == [
        ("key_id", root.key_id),
        ("version", 1),
        ("type", "symmetric"),
        ("length", 256),
        ("owner_org", None),
        ("purpose", "key-wrapping"),
        ("algorithm", "AES-256-GCM"),
        ("state", "active"),
        ("not_before", None),
        ("not_after", None),
        ("created_at", None),
        ("state_changed_at", None),
        ("parent_id", None),
        ("location", root.kind),
        ("data_keys", None),
    ]
    keks = {e.owner_org: e for e in entries if e.purpose == "key-wrapping" and e.owner_org}
    assert {org: (e.type, e.length, e.data_keys, e.state) for org, e in keks.items()} == {
        "org-a": ("symmetric", 256, 2, "active"),
        "org-b": ("symmetric", 256, 1, "active"),
    }
    (ledger,) = [e for e in entries if e.purpose == "ledger-signing"]
    assert (ledger.type, ledger.length, ledger.algorithm, ledger.version) == (
        "asymmetric",
        256,
        "Ed25519",
        1,
    )
    assert ledger.not_before == NOW and ledger.not_after is None
    public = ledger.to_public()
    assert public["not_before"] == NOW.isoformat() and public["state"] == "active"


def test_wrong_purpose_and_unknown_keys(store: KeyStore, kms: KeyManager, engine: Engine) -> None:
    _data_keys(store, engine, 1)
    with Session(engine) as session:
        with pytest.raises(KeyPurposeMismatch):
            store.signing_key(session, purpose="key-wrapping", now=NOW)
        with pytest.raises(KeyPurposeMismatch):
            store.signer(session, purpose="data-encryption", now=NOW)
        with pytest.raises(KeyPurposeMismatch):
            kms.distribute(session, KeyManager.kek_id("org-a"), recipient="x", by=ADMIN1, now=NOW)
        with pytest.raises(KeyPurposeMismatch):
            store.generate_data_key(object_ref="dataset:9", algorithm="Ed25519")
        with pytest.raises(KeyPurposeMismatch):  # a signing algorithm cannot wrap
            kms.rotate(session, KeyManager.kek_id("org-a"), by=ADMIN1, now=NOW, algorithm="Ed25519")
        with pytest.raises(KeyPurposeMismatch):
            kms.generate_key(
                session,
                purpose="key-wrapping",
                owner_org="z",
                algorithm="SM2-SM3",
                by=ADMIN1,
                now=NOW,
            )
        with pytest.raises(KeyPurposeMismatch):
            kms.generate_key(session, purpose="data-encryption", by=ADMIN1, now=NOW)
        for unknown in (str(uuid.uuid4()), "nope"):
            with pytest.raises(KeyNotFound) as caught:
                kms.rotate(session, unknown, by=ADMIN1, now=NOW)
            assert caught.value.code == "key-not-found"
            with pytest.raises(KeyNotFound):
                kms.request_destroy(session, unknown, by=ADMIN1, now=NOW, reason="r")
        with pytest.raises(KeyRoleDenied):
            kms.rotate(session, KeyManager.kek_id("org-a"), by=OPERATOR, now=NOW)


# -- rotation -------------------------------------------------------------------------------


def test_rotation_rewraps_data_keys_without_reencrypting_data(
    store: KeyStore, kms: KeyManager, engine: Engine, recorder: Recorder
) -> None:
    keys = _data_keys(store, engine, 7)
    # Data sealed under one data key before the rotation ...
    sealed = io.BytesIO()
    with StreamEncryptor(keys[0].key, sealed, aad=b"dataset:0") as encryptor:
        encryptor.write(b"rows of data" * 100)
    ciphertext = sealed.getvalue()
    kek_id = KeyManager.kek_id("org-a")
    with Session(engine) as session:
        before = {r.id: r.wrapped for r in session.scalars(select(DataKeyRecord))}
    later = NOW + timedelta(days=400)
    with Session(engine) as session:
        progress = kms.rotate(session, kek_id, by=ADMIN1, now=later, batch_size=3)
    assert (progress.version, progress.rewrapped, progress.remaining, progress.done) == (
        2,
        7,
        0,
        True,
    )
    assert _states(engine, kek_id) == {1: "deactivated", 2: "active"}
    assert _versions_used(engine) == [2] * 7
    with Session(engine) as session:
        after = {r.id: r.wrapped for r in session.scalars(select(DataKeyRecord))}
    assert all(after[i] != before[i] for i in before)
    _all_readable(store, engine, keys)
    # ... still decrypts, byte for byte: only the wraps changed.
    with Session(engine) as session:
        key = store.data_key(session, keys[0].id, object_ref="dataset:0")
    assert b"".join(decrypt_stream(key, io.BytesIO(ciphertext), aad=b"dataset:0")) == (
        b"rows of data" * 100
    )
    rotations = recorder.ops(KeyOperation.ROTATE)
    assert [e.version for e in rotations] == [2, 2, 2, 2]  # start + 3 batches (3, 3, 1)
    assert all(e.actor == "admin-1" for e in rotations)
    assert [(e.version, e.state) for e in recorder.ops(KeyOperation.ARCHIVE)] == [
        (1, "deactivated")
    ]
    # New data keys go under the new version.
    (fresh,) = _data_keys(store, engine, 1, now=later)
    with Session(engine) as session:
        record = session.get(DataKeyRecord, fresh.id)
        assert record is not None and record.kek_version == 2
        assert kms.due_for_rotation(session, now=later, by=AUDITOR) == []


def test_failure_mid_rotation_keeps_everything_readable_and_resumes(
    store: KeyStore, kms: KeyManager, engine: Engine, recorder: Recorder
) -> None:
    keys = _data_keys(store, engine, 7)
    kek_id = KeyManager.kek_id("org-a")
    batches: list[KeyEvent] = []

    def second_batch_fails(event: KeyEvent) -> bool:
        if event.operation is KeyOperation.ROTATE and "re-wrapped" in event.detail:
            batches.append(event)
            return len(batches) == 2
        return False

    recorder.fail_when = second_batch_fails
    with Session(engine) as session:
        with pytest.raises(RuntimeError, match="audit pipeline"):
            kms.rotate(session, kek_id, by=ADMIN1, now=NOW, batch_size=3)
    # The first batch committed, the second rolled back; the old version is still active.
    assert _states(engine, kek_id) == {1: "active", 2: "active"}
    assert _versions_used(engine) == [1, 1, 1, 1, 2, 2, 2]
    _all_readable(store, engine, keys)
    with Session(engine) as session:
        (due,) = kms.due_for_rotation(session, now=NOW, by=AUDITOR)
    assert (due.key_id, due.version, due.reason, due.pending_data_keys) == (
        kek_id,
        2,
        "rewrap-pending",
        4,
    )
    recorder.fail_when = None
    with Session(engine) as session:
        progress = kms.rotate(session, kek_id, by=ADMIN2, now=NOW, batch_size=3)
    assert (progress.version, progress.rewrapped, progress.done) == (2, 4, True)
    assert _states(engine, kek_id) == {1: "deactivated", 2: "active"}  # resumed: no version 3
    assert _versions_used(engine) == [2] * 7
    _all_readable(store, engine, keys)


def test_failure_before_the_new_version_commits_leaves_only_the_old(
    store: KeyStore, kms: KeyManager, engine: Engine, recorder: Recorder
) -> None:
    keys = _data_keys(store, engine, 2)
    kek_id = KeyManager.kek_id("org-a")
    recorder.fail_when = lambda event: event.operation is KeyOperation.GENERATE
    with Session(engine) as session:
        with pytest.raises(RuntimeError):
            kms.rotate(session, kek_id, by=ADMIN1, now=NOW)
    assert _states(engine, kek_id) == {1: "active"}
    _all_readable(store, engine, keys)


def test_signing_key_rotation_keeps_old_tokens_verifiable(
    store: KeyStore, kms: KeyManager, engine: Engine
) -> None:
    with Session(engine) as session:
        old = store.signing_key(session, purpose="token-signing", now=NOW)
        session.commit()
    token = jwt.encode({"sub": "c"}, old.private_key, "EdDSA", headers={"kid": old.kid})
    with Session(engine) as session:
        progress = kms.rotate(session, old.key_id, by=ADMIN1, now=NOW)
    assert progress.version == 2
    assert _states(engine, old.key_id) == {1: "deactivated", 2: "active"}
    with Session(engine) as session:
        new = store.signing_key(session, purpose="token-signing", now=NOW)
        jwks = store.public_jwks(session, purpose="token-signing")
    assert new.version == 2 and new.kid != old.kid
    assert [k["kid"] for k in jwks] == [new.kid, old.kid]
    verifier = jwt.PyJWK(next(k for k in jwks if k["kid"] == old.kid)).key
    assert jwt.decode(token, verifier, algorithms=["EdDSA"]) == {"sub": "c"}


def test_due_for_rotation_follows_the_policy(
    root: RootKeyBackend, engine: Engine, recorder: Recorder
) -> None:
    store = KeyStore(root, events=recorder)
    policy = RotationPolicy(
        {KeyPurpose.KEY_WRAPPING: timedelta(days=30), KeyPurpose.TOKEN_SIGNING: timedelta(days=7)}
    )
    kms = KeyManager(store, policy=policy)
    _data_keys(store, engine, 1)
    with Session(engine) as session:
        store.signing_key(session, purpose="token-signing", now=NOW)
        store.signing_key(session, purpose="ledger-signing", now=NOW)  # not in this policy
        session.commit()
        assert kms.due_for_rotation(session, now=NOW + timedelta(days=6), by=AUDITOR) == []
        due = kms.due_for_rotation(session, now=NOW + timedelta(days=31), by=AUDITOR)
        assert [(d.purpose, d.reason, d.due_at) for d in due] == [
            ("token-signing", "max-age", NOW + timedelta(days=7)),
            ("key-wrapping", "max-age", NOW + timedelta(days=30)),
        ]
        with pytest.raises(KeyRoleDenied):
            kms.due_for_rotation(session, now=NOW, by=OPERATOR)


# -- states: suspend, revoke, validity -----------------------------------------------------------


def test_suspended_key_is_unusable_until_resumed(
    store: KeyStore, kms: KeyManager, engine: Engine
) -> None:
    (key,) = _data_keys(store, engine, 1)
    kek_id = KeyManager.kek_id("org-a")
    with Session(engine) as session:
        kms.change_state(session, kek_id, 1, "suspend", by=ADMIN1, now=NOW, reason="investigation")
        session.commit()
    with Session(engine) as session:
        with pytest.raises(KeySuspended) as caught:
            store.data_key(session, key.id, object_ref=key.object_ref)
        assert caught.value.code == "key-suspended"
        with pytest.raises(KeySuspended):
            store.new_data_key(session, owner_org="org-a", object_ref="dataset:2", now=NOW)
        with pytest.raises(KeyStateTransitionInvalid):
            kms.change_state(session, kek_id, 1, "activate", by=ADMIN1, now=NOW)
        kms.change_state(session, kek_id, 1, "resume", by=ADMIN1, now=NOW)
        assert store.data_key(session, key.id, object_ref=key.object_ref) == key.key
        with pytest.raises(KeyStateTransitionInvalid) as invalid:
            kms.change_state(session, kek_id, 1, "resume", by=ADMIN1, now=NOW)
        assert invalid.value.code == "key-state-transition-invalid"


def test_state_changes_record_the_reason_or_the_administrator(
    store: KeyStore, kms: KeyManager, engine: Engine, recorder: Recorder
) -> None:
    """A suspension and a revocation keep the caller's reason; the others name who acted."""
    _data_keys(store, engine, 1)
    kek_id = KeyManager.kek_id("org-a")
    with Session(engine) as session:
        kms.change_state(session, kek_id, 1, "suspend", by=ADMIN1, now=NOW, reason="audit")
        kms.change_state(session, kek_id, 1, "resume", by=ADMIN1, now=NOW, reason="ignored")
        kms.change_state(session, kek_id, 1, "archive", by=ADMIN1, now=NOW)
        kms.change_state(session, kek_id, 1, "revoke", by=ADMIN1, now=NOW, reason="leaked")
        session.commit()
    moves = [
        (e.operation, e.detail, e.actor, e.state)
        for e in recorder.events
        if e.operation
        in (KeyOperation.SUSPEND, KeyOperation.RESUME, KeyOperation.REVOKE, KeyOperation.ARCHIVE)
    ]
    assert moves == [
        (KeyOperation.SUSPEND, "audit", ADMIN1.id, "suspended"),
        (KeyOperation.RESUME, f"by {ADMIN1.id}", ADMIN1.id, "active"),
        (KeyOperation.ARCHIVE, f"by {ADMIN1.id}", ADMIN1.id, "deactivated"),
        (KeyOperation.REVOKE, "leaked", ADMIN1.id, "compromised"),
    ]


def test_compromised_kek_still_decrypts_and_is_rotated_away(
    store: KeyStore, kms: KeyManager, engine: Engine, recorder: Recorder
) -> None:
    keys = _data_keys(store, engine, 3)
    kek_id = KeyManager.kek_id("org-a")
    with Session(engine) as session:
        kms.change_state(session, kek_id, 1, "revoke", by=ADMIN1, now=NOW, reason="key leaked")
        session.commit()
    assert recorder.ops(KeyOperation.REVOKE)[0].state == "compromised"
    _all_readable(store, engine, keys)
    with Session(engine) as session:
        with pytest.raises(KeyNotActive):
            store.new_data_key(session, owner_org="org-a", object_ref="dataset:9", now=NOW)
        (due,) = kms.due_for_rotation(session, now=NOW, by=AUDITOR)
        assert (due.reason, due.pending_data_keys) == ("compromised", 3)
    with Session(engine) as session:
        assert kms.rotate(session, kek_id, by=ADMIN1, now=NOW).rewrapped == 3
    assert _states(engine, kek_id) == {1: "compromised", 2: "active"}
    _all_readable(store, engine, keys)
    with Session(engine) as session:
        assert kms.due_for_rotation(session, now=NOW, by=AUDITOR) == []


def test_compromised_signing_key_is_no_longer_published(
    store: KeyStore, kms: KeyManager, engine: Engine
) -> None:
    with Session(engine) as session:
        key = store.signing_key(session, purpose="signing", now=NOW)
        kms.change_state(session, key.key_id, 1, "revoke", by=ADMIN1, now=NOW, reason="leak")
        assert store.public_jwks(session, purpose="signing") == []
        with pytest.raises(KeyNotActive):
            store.signing_key(session, purpose="signing", now=NOW)


def test_validity_window_and_pre_active_keys(
    store: KeyStore, kms: KeyManager, engine: Engine
) -> None:
    start, end = NOW + timedelta(days=1), NOW + timedelta(days=10)
    with Session(engine) as session:
        info = kms.generate_key(
            session,
            purpose="key-wrapping",
            owner_org="org-a",
            by=ADMIN1,
            now=NOW,
            not_before=start,
            not_after=end,
        )
        assert (info.state, info.not_before, info.not_after) == ("pre-active", start, end)
        with pytest.raises(KeyNotActive):
            store.new_data_key(session, owner_org="org-a", object_ref="d", now=NOW)
        with pytest.raises(KeyStateTransitionInvalid):
            kms.generate_key(session, purpose="key-wrapping", owner_org="org-a", by=ADMIN1, now=NOW)
        kms.change_state(session, info.key_id, 1, "activate", by=ADMIN1, now=NOW)
        with pytest.raises(KeyExpired) as early:
            store.new_data_key(session, owner_org="org-a", object_ref="d", now=NOW)
        assert early.value.code == "key-expired"
        key = store.new_data_key(session, owner_org="org-a", object_ref="d", now=start)
        with pytest.raises(KeyExpired):
            store.new_data_key(session, owner_org="org-a", object_ref="e", now=end)
        # Past not_after the key no longer protects, but what it protected stays readable.
        assert store.data_key(session, key.id, object_ref="d") == key.key
        (due,) = kms.due_for_rotation(session, now=end, by=AUDITOR)
        assert (due.reason, due.due_at) == ("expired", end)


# -- crypto-shredding and the two-person rule -------------------------------------------------


def test_crypto_shredding_an_organisation(
    store: KeyStore, kms: KeyManager, engine: Engine, root: RootKeyBackend, recorder: Recorder
) -> None:
    keys = _data_keys(store, engine, 3, "org-a")
    others = _data_keys(store, engine, 2, "org-b")
    kek_id = KeyManager.kek_id("org-a")
    with Session(engine) as session:
        kms.rotate(session, kek_id, by=ADMIN1, now=NOW, batch_size=2)
    keys += _data_keys(store, engine, 1, "org-a")
    with Session(engine) as session:
        request = kms.request_destroy(
            session, kek_id, by=ADMIN1, now=NOW, reason="organisation left the exchange"
        )
        session.commit()
        assert (request.status, request.version, request.requested_by) == (
            "pending",
            None,
            "admin-1",
        )
        with pytest.raises(DualControlViolation) as same:
            kms.approve_destroy(session, request.id, by=ADMIN1, now=NOW)
        assert same.value.code == "key-dual-control-violation"
        with pytest.raises(KeyRoleDenied):
            kms.approve_destroy(session, request.id, by=AUDITOR, now=NOW)
        done = kms.approve_destroy(session, request.id, by=ADMIN2, now=NOW)
        session.commit()
    assert (done.status, done.decided_by) == ("executed", "admin-2")
    assert _states(engine, kek_id) == {1: "destroyed", 2: "destroyed"}
    destroyed = recorder.ops(KeyOperation.DESTROY)
    assert {(e.key_id, e.version, e.actor) for e in destroyed} == {
        (kek_id, 1, "admin-2"),
        (kek_id, 2, "admin-2"),
    }
    # The raw storage: no wrapped byte of org A's keys is left in either table ...
    with engine.connect() as conn:
        kek_rows = conn.execute(
            text("SELECT wrapped_material FROM crypto_keys WHERE id = :id"), {"id": kek_id}
        ).all()
        data_rows = conn.execute(
            text("SELECT wrapped FROM crypto_data_keys WHERE kek_id = :id"), {"id": kek_id}
        ).all()
    assert len(kek_rows) == 2 and all(bytes(r[0]) == b"" for r in kek_rows)
    assert len(data_rows) == 4 and all(bytes(r[0]) == b"" for r in data_rows)
    # ... the root backend has nothing to unwrap ...
    with pytest.raises(InvalidCiphertext):
        root.unwrap(b"", b"")
    # ... and no API path decrypts.
    with Session(engine) as session:
        for key in keys:
            with pytest.raises(KeyDestroyed) as caught:
                store.data_key(session, key.id, object_ref=key.object_ref)
            assert caught.value.code == "key-destroyed"
        with pytest.raises(KeyDestroyed):
            store.new_data_key(session, owner_org="org-a", object_ref="again", now=NOW)
        with pytest.raises(KeyDestroyed):
            kms.rotate(session, kek_id, by=ADMIN1, now=NOW)
        inventory = {(e.key_id, e.version): e for e in kms.inventory(session, by=AUDITOR)}
        assert inventory[(kek_id, 1)].state == "destroyed"
        assert inventory[(kek_id, 1)].data_keys == 0
    _all_readable(store, engine, others)
    # An administrator may re-provision the organisation with a new KEK version.
    with Session(engine) as session:
        info = kms.generate_key(
            session, purpose="key-wrapping", owner_org="org-a", by=ADMIN1, now=NOW
        )
        assert (info.version, info.state) == (3, "active")
        store.new_data_key(session, owner_org="org-a", object_ref="fresh", now=NOW)


def test_destroy_request_rules(store: KeyStore, kms: KeyManager, engine: Engine) -> None:
    with Session(engine) as session:
        key = store.signing_key(session, purpose="signing", now=NOW)
        with pytest.raises(KeyRoleDenied):
            kms.request_destroy(session, key.key_id, by=OPERATOR, now=NOW, reason="r")
        first = kms.request_destroy(session, key.key_id, version=1, by=ADMIN1, now=NOW, reason="r")
        with pytest.raises(DestroyRequestInvalid):
            kms.request_destroy(session, key.key_id, by=ADMIN2, now=NOW, reason="again")
        kms.cancel_destroy(session, first.id, by=ADMIN2, now=NOW)
        with pytest.raises(DestroyRequestInvalid):
            kms.approve_destroy(session, first.id, by=ADMIN2, now=NOW)
        late = kms.request_destroy(session, key.key_id, version=1, by=ADMIN1, now=NOW, reason="r")
        with pytest.raises(DestroyRequestInvalid, match="expired"):
            kms.approve_destroy(session, late.id, by=ADMIN2, now=NOW + timedelta(days=4))
        with pytest.raises(DestroyRequestInvalid) as unknown:
            kms.approve_destroy(session, str(uuid.uuid4()), by=ADMIN2, now=NOW)
        assert unknown.value.code == "key-destroy-request-invalid"
        pending = kms.request_destroy(
            session, key.key_id, version=1, by=ADMIN1, now=NOW + timedelta(days=5), reason="r"
        )
        later = NOW + timedelta(days=5)
        assert [r.id for r in kms.destroy_requests(session, by=AUDITOR, now=later)] == [pending.id]
        everything = kms.destroy_requests(session, by=AUDITOR, now=later, status=None)
        assert {(r.id, r.status) for r in everything} == {
            (first.id, "cancelled"),
            (late.id, "expired"),
            (pending.id, "pending"),
        }
        kms.approve_destroy(session, pending.id, by=ADMIN2, now=NOW + timedelta(days=5))
        record = session.get(DestroyRequestRecord, pending.id)
        assert record is not None and record.status == "executed"
        # Active → deactivated → destroyed, as the table requires; then it is gone.
        assert _states_in(session, key.key_id) == {1: "destroyed"}
        assert store.public_jwks(session, purpose="signing") == []
        with pytest.raises(KeyDestroyed):
            store.signing_key(session, purpose="signing", now=NOW)
        with pytest.raises(KeyDestroyed):
            kms.request_destroy(session, key.key_id, by=ADMIN1, now=NOW, reason="r")


def _states_in(session: Session, key_id: str) -> dict[int, str]:
    rows = session.scalars(select(KeyRecord).where(KeyRecord.id == key_id)).all()
    return {row.version: row.state for row in rows}


# -- backup and restore ----------------------------------------------------------------------


def test_backup_restore_round_trip_into_a_fresh_database_and_backend(
    store: KeyStore,
    engine: Engine,
    new_engine: Callable[[str], Engine],
    make_root: Callable[[str], RootKeyBackend],
    recorder: Recorder,
) -> None:
    keys = _data_keys(store, engine, 3)
    with Session(engine) as session:
        signer = store.signing_key(session, purpose="ledger-signing", now=NOW)
        session.commit()
    kit = create_recovery_key()  # 3 of 5
    assert (kit.threshold, len(kit.shares)) == (3, 5)
    with Session(engine) as session:
        with pytest.raises(KeyRoleDenied):
            export_backup(store, session, recovery_public_key=kit.public_key, by=OPERATOR, now=NOW)
        backup = export_backup(
            store, session, recovery_public_key=kit.public_key, by=ADMIN1, now=NOW
        )
        session.commit()
    assert len(recorder.ops(KeyOperation.BACKUP)) == 2
    for key in keys:
        assert key.key.hex().encode() not in backup and key.key not in backup

    fresh_root = make_root("fresh")
    assert fresh_root.key_id != store.root.key_id
    fresh_events = Recorder()
    fresh = KeyStore(fresh_root, events=fresh_events)
    fresh_engine = new_engine("fresh")
    shares: list[bytes | str] = [kit.share_text(0), kit.shares[2], kit.share_text(4)]
    with Session(fresh_engine) as session:
        with pytest.raises(TooFewShares) as few:
            restore_backup(fresh, session, backup, shares=shares[:2], by=ADMIN2, now=NOW)
        assert few.value.code == "shares-too-few"
        other = create_recovery_key()
        with pytest.raises(InconsistentShares):
            restore_backup(
                fresh, session, backup, shares=list(other.shares[:3]), by=ADMIN2, now=NOW
            )
        with pytest.raises(InconsistentShares):  # a share of another split mixed in
            mixed = [kit.shares[0], kit.shares[1], other.shares[2]]
            restore_backup(fresh, session, backup, shares=mixed, by=ADMIN2, now=NOW)
        tampered = backup.replace(b'"keys":2', b'"keys":3')
        with pytest.raises(BackupInvalid) as bad:
            restore_backup(fresh, session, tampered, shares=shares, by=ADMIN2, now=NOW)
        assert bad.value.code == "key-backup-invalid"
        with pytest.raises(BackupInvalid):
            restore_backup(fresh, session, b"not json", shares=shares, by=ADMIN2, now=NOW)
        report = restore_backup(fresh, session, backup, shares=shares, by=ADMIN2, now=NOW)
        session.commit()
    assert (report.keys_restored, report.data_keys_restored, report.skipped) == (2, 3, ())
    assert {e.operation for e in fresh_events.events} == {KeyOperation.RESTORE}
    _all_readable(fresh, fresh_engine, keys)
    with Session(fresh_engine) as session:
        restored = fresh.signing_key(session, purpose="ledger-signing", now=NOW)
        row = session.get(KeyRecord, (restored.key_id, 1))
        assert row is not None and row.parent_id == fresh_root.key_id
        again = restore_backup(fresh, session, backup, shares=shares, by=ADMIN2, now=NOW)
    assert restored.kid == signer.kid
    assert (again.keys_restored, again.data_keys_restored, len(again.skipped)) == (0, 0, 2)


def test_backup_threshold_is_configurable_and_shares_parse() -> None:
    kit = create_recovery_key(threshold=2, shares=3)
    assert share_from_text(kit.share_text(1)) == kit.shares[1]
    with pytest.raises(InconsistentShares):
        share_from_text("hello")
    with pytest.raises(ValueError):
        create_recovery_key(threshold=4, shares=3)


def test_restore_never_resurrects_a_key_destroyed_here(
    store: KeyStore, kms: KeyManager, engine: Engine
) -> None:
    keys = _data_keys(store, engine, 1)
    kit = create_recovery_key(threshold=2, shares=2)
    kek_id = KeyManager.kek_id("org-a")
    with Session(engine) as session:
        backup = export_backup(
            store, session, recovery_public_key=kit.public_key, by=ADMIN1, now=NOW
        )
        request = kms.request_destroy(session, kek_id, by=ADMIN1, now=NOW, reason="shred")
        kms.approve_destroy(session, request.id, by=ADMIN2, now=NOW)
        report = restore_backup(store, session, backup, shares=kit.shares, by=ADMIN1, now=NOW)
        assert report.keys_restored == 0 and report.skipped == ((kek_id, 1),)
        with pytest.raises(KeyDestroyed):
            store.data_key(session, keys[0].id, object_ref=keys[0].object_ref)


# -- cipher suites -----------------------------------------------------------------------------


def test_sm_suite_uses_sm4_keks_and_sm2_ledger_keys(root: RootKeyBackend, engine: Engine) -> None:
    store = KeyStore(root, suite="sm")
    (key,) = _data_keys(store, engine, 1)
    assert (key.algorithm, len(key.key), key.stream_suite) == ("SM4-GCM", 16, 2)
    sealed = io.BytesIO()
    with StreamEncryptor(key.key, sealed, aad=b"a", suite=key.stream_suite) as encryptor:
        encryptor.write(b"data")
    assert b"".join(decrypt_stream(key.key, io.BytesIO(sealed.getvalue()), aad=b"a")) == b"data"
    with Session(engine) as session:
        kek = session.get(KeyRecord, (KeyManager.kek_id("org-a"), 1))
        assert kek is not None and kek.algorithm == "SM4-GCM"
        assert store.data_key(session, key.id, object_ref=key.object_ref) == key.key
        ledger = store.signer(session, purpose="ledger-signing", now=NOW)
        assert (ledger.algorithm, ledger.signature_algorithm) == ("SM2-SM3", "sm2-sm3")
        signature = ledger.sign(b"block 1")
        (published,) = store.public_keys(session, purpose="ledger-signing")
        assert published.kid == ledger.kid and published.verify(b"block 1", signature)
        assert not published.verify(b"block 2", signature)
        with pytest.raises(KeyAlgorithmMismatch):
            store.signing_key(session, purpose="ledger-signing", now=NOW)
        with pytest.raises(KeyAlgorithmMismatch):
            store.public_jwks(session, purpose="ledger-signing")
        # JWTs have no SM2: token-signing stays Ed25519 under every suite.
        assert store.signing_key(session, purpose="token-signing", now=NOW).version == 1
        ca = store.signer(session, purpose="tls-ca", now=NOW)
        assert ca.algorithm == "SM2-SM3"


def test_suite_per_tenant_and_migration_by_rotation(
    store: KeyStore, kms: KeyManager, engine: Engine
) -> None:
    with Session(engine) as session:
        kms.generate_key(
            session, purpose="key-wrapping", owner_org="org-sm", suite="sm", by=ADMIN1, now=NOW
        )
        session.commit()
    sm_keys = _data_keys(store, engine, 2, "org-sm")
    intl_keys = _data_keys(store, engine, 2, "org-intl")
    with Session(engine) as session:
        assert session.get(KeyRecord, (KeyManager.kek_id("org-sm"), 1)).algorithm == "SM4-GCM"  # type: ignore[union-attr]
        kms.rotate(session, KeyManager.kek_id("org-intl"), by=ADMIN1, now=NOW, algorithm="SM4-GCM")
    with Session(engine) as session:
        moved = session.get(KeyRecord, (KeyManager.kek_id("org-intl"), 2))
        assert moved is not None and moved.algorithm == "SM4-GCM"
        ecdsa = store.signer(session, purpose="tls-ca", now=NOW)
        assert ecdsa.algorithm == "ECDSA-P256-SHA256"
        (jwk,) = [dict(k) for k in [store.public_keys(session, purpose="tls-ca")[0].__dict__]]
        assert jwk["kid"] == ecdsa.kid
    _all_readable(store, engine, sm_keys + intl_keys)


def test_distribute_publishes_public_keys_only(
    store: KeyStore, kms: KeyManager, engine: Engine, recorder: Recorder
) -> None:
    with Session(engine) as session:
        key = store.signing_key(session, purpose="ledger-signing", now=NOW)
        public = kms.distribute(session, key.key_id, recipient="witness-1", by=OPERATOR, now=NOW)
        assert public.kid == key.kid and public.state == "active"
        kms.change_state(session, key.key_id, 1, "suspend", by=ADMIN1, now=NOW, reason="r")
        with pytest.raises(KeyNotActive):
            kms.distribute(session, key.key_id, recipient="witness-1", by=OPERATOR, now=NOW)
    (event,) = recorder.ops(KeyOperation.DISTRIBUTE)
    assert "witness-1" in event.detail and event.actor == "operator-1"


# -- backend specifics: the sealed local file, the HSM's refusals -------------------------------


def test_sealed_root_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "root.key"
    root = LocalRootKey.create_or_load(path, PASSPHRASE)  # the default scrypt cost
    assert root.kind == "local-sealed"
    assert path.stat().st_mode & 0o777 == 0o600
    content = path.read_bytes()
    assert content.startswith(b"PDXRK\x01") and len(content) == 85
    assert LocalRootKey.load(path, PASSPHRASE).key_id == root.key_id
    blob = root.wrap(b"kek", b"aad")
    with pytest.raises(RootKeyPassphraseInvalid) as wrong:
        LocalRootKey.load(path, "wrong horse")
    assert wrong.value.code == "root-key-passphrase-invalid"
    assert isinstance(wrong.value, KeyStoreUnavailable)
    with pytest.raises(RootKeyPassphraseInvalid, match="passphrase is needed"):
        LocalRootKey.create_or_load(path)
    with pytest.raises(ValueError):
        LocalRootKey.create_or_load(tmp_path / "other.key", "")
    # A changed passphrase re-seals the same key: everything it wrapped still unwraps.
    resealed = LocalRootKey.seal_file(path, "new phrase", old_passphrase=PASSPHRASE)
    assert resealed.unwrap(blob, b"aad") == b"kek"
    with pytest.raises(RootKeyPassphraseInvalid):
        LocalRootKey.load(path, PASSPHRASE)
    damaged = bytearray(path.read_bytes())
    damaged[-1] ^= 1
    path.write_bytes(bytes(damaged))
    with pytest.raises(RootKeyPassphraseInvalid):
        LocalRootKey.load(path, "new phrase")


def test_unsealed_root_key_file_migrates_to_sealed(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    legacy = LocalRootKey.create_or_load(path)
    assert legacy.kind == "local" and path.stat().st_size == 32
    with pytest.raises(KeyStoreUnavailable, match="not sealed"):
        LocalRootKey.load(path, PASSPHRASE)
    sealed = LocalRootKey.seal_file(path, PASSPHRASE, scrypt_log2_n=10)
    assert sealed.key_id == legacy.key_id and sealed.kind == "local-sealed"
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.hsm
def test_hsm_root_key_cannot_be_extracted(softhsm: Pkcs11Config) -> None:
    with Pkcs11RootKey(replace(softhsm, key_label="extract-test")) as backend:
        assert backend.kind == "pkcs11" and backend.key_id.startswith("pkcs11:")
        facts = backend.attributes()
        assert facts["sensitive"] and facts["always_sensitive"]
        assert not facts["extractable"] and facts["never_extractable"]
        assert facts["value_len"] == 32
        key = backend._key
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            key[pkcs11.Attribute.VALUE]
        session = backend._shared.session
        wrapper = session.generate_key(
            pkcs11.KeyType.AES, 256, label="wrapper", template={pkcs11.Attribute.WRAP: True}
        )
        with pytest.raises(pkcs11.exceptions.PKCS11Error):
            wrapper.wrap_key(key)  # type: ignore[attr-defined]
        with pytest.raises(pkcs11.exceptions.PKCS11Error):
            key[pkcs11.Attribute.EXTRACTABLE] = True
        assert backend.attributes()["extractable"] is False
        blob = backend.wrap(b"secret", b"aad")
        assert blob[0] == 0x81 and b"secret" not in blob
        assert backend.unwrap(blob, b"aad") == b"secret"
        for bad, aad in ((blob, b"other"), (blob[:-1], b"aad"), (b"\x01" + blob[1:], b"aad")):
            with pytest.raises(InvalidCiphertext):
                backend.unwrap(bad, aad)
    with pytest.raises(HsmUnavailable, match="closed"):
        backend.wrap(b"x", b"y")


@pytest.mark.hsm
def test_hsm_unavailable_is_a_clear_error(softhsm: Pkcs11Config, tmp_path: Path) -> None:
    cases = [
        (replace(softhsm, module_path=str(tmp_path / "missing.so")), "cannot load"),
        (replace(softhsm, token_label="no-such-token"), "no PKCS#11 token"),
        (replace(softhsm, user_pin="0000-wrong"), "wrong PKCS#11 user PIN"),
    ]
    for config, message in cases:
        with pytest.raises(HsmUnavailable, match=message) as caught:
            Pkcs11RootKey(replace(config, key_label="unavailable-test"))
        assert caught.value.code == "hsm-unavailable"
        assert isinstance(caught.value, KeyStoreUnavailable)
    # A wrong PIN is refused while another backend holds the login, too.
    with Pkcs11RootKey(replace(softhsm, key_label="unavailable-test")):
        with pytest.raises(HsmUnavailable, match="wrong PKCS#11 user PIN"):
            Pkcs11RootKey(replace(softhsm, user_pin="0000-wrong", key_label="unavailable-test"))
        with pytest.raises(HsmUnavailable, match="no root key object"):
            Pkcs11RootKey(replace(softhsm, key_label="never-created"), create=False)


def test_use_events_are_opt_in(root: RootKeyBackend, engine: Engine, recorder: Recorder) -> None:
    quiet = KeyStore(root, events=recorder)
    (key,) = _data_keys(quiet, engine, 1)
    with Session(engine) as session:
        quiet.data_key(session, key.id, object_ref=key.object_ref)
        quiet.signing_key(session, purpose="token-signing", now=NOW)
    assert recorder.ops(KeyOperation.USE) == []
    counting = KeyStore(root, events=recorder, record_use=True)
    with Session(engine) as session:
        counting.data_key(session, key.id, object_ref=key.object_ref)
        counting.signer(session, purpose="ledger-signing", now=NOW)
    uses = recorder.ops(KeyOperation.USE)
    assert [(e.key_id, e.purpose) for e in uses] == [
        (key.id, "data-encryption"),
        (KeyManager.platform_key_id("ledger-signing"), "ledger-signing"),
    ]
    assert uses[0].event_type == "key.used"


def test_rows_from_before_the_kms_columns_still_work(
    store: KeyStore, kms: KeyManager, engine: Engine
) -> None:
    (key,) = _data_keys(store, engine, 1)
    with engine.begin() as conn:  # what revision 0004 finds: no validity, no state time
        conn.execute(text("UPDATE crypto_keys SET not_before = NULL, state_changed_at = NULL"))
    _all_readable(store, engine, [key])
    _data_keys(store, engine, 1)
    with Session(engine) as session:
        (due,) = kms.due_for_rotation(session, now=NOW + timedelta(days=366), by=AUDITOR)
        assert (due.active_since, due.reason) == (NOW, "max-age")
