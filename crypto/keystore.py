"""Key hierarchy: root key (backend) → one KEK per organisation → one data key per object."""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crypto.backends import RootKeyBackend
from crypto.errors import (
    InvalidCiphertext,
    KeyAlgorithmMismatch,
    KeyDestroyed,
    KeyExpired,
    KeyNotActive,
    KeyNotFound,
    KeyPurposeMismatch,
    KeyStoreUnavailable,
    KeySuspended,
)
from crypto.events import KeyEvent, KeyEventSink, KeyOperation
from crypto.keymaterial import (
    ALGORITHM_ED25519,
    ALGORITHMS,
    SIGNER_PURPOSES,
    SIGNING_PURPOSES,
    DataKey,
    KeyAlgorithm,
    PublicKey,
    Signer,
    SigningKey,
    _kid,
    _public_jwk,
    _purpose,
    _require_ref,
    algorithm_info,
    check_processable,
    data_key_aad,
    event_for,
    generate_material,
    in_validity,
    kek_algorithm,
    kek_unwrap,
    kek_wrap,
    key_aad,
    key_id_for,
    require_aware,
    row_aad,
    row_fields,
    signing_algorithm,
)
from crypto.lifecycle import (
    KeyPurpose,
    KeyState,
    check_transition,
)
from crypto.models import DataKeyRecord, KeyRecord
from crypto.suites import signature as signatures
from crypto.suites.suite import CipherSuite, SuiteName
from crypto.suites.suite import suite as cipher_suite

__all__ = [
    "ALGORITHMS",
    "DataKey",
    "KeyAlgorithm",
    "KeyPurpose",
    "KeyStore",
    "PublicKey",
    "Signer",
    "SigningKey",
]


class KeyStore:
    """Keys in the caller's database session, wrapped under a root key backend.

    Every method takes the caller's `Session` and only adds, deletes and flushes:
    the caller commits or rolls back, and a rolled-back transaction leaves no key.
    (`crypto.kms.KeyManager.rotate` is the one exception, and says so.)

    `events` receives a `KeyEvent` for every lifecycle operation, in the same session.
    `suite` ("intl" or "sm") picks the algorithms of keys generated on first use;
    `record_use` adds `use` events for every data-key unwrap and signing-key load.
    """

    def __init__(
        self,
        root: RootKeyBackend,
        events: KeyEventSink | None = None,
        *,
        suite: str = SuiteName.INTL,
        record_use: bool = False,
    ) -> None:
        self._root = root
        self._events = events
        self._suite = cipher_suite(suite)
        self._record_use = record_use

    @property
    def root(self) -> RootKeyBackend:
        return self._root

    @property
    def suite(self) -> CipherSuite:
        return self._suite

    # -- data keys ---------------------------------------------------------------------

    def new_data_key(
        self,
        session: Session,
        *,
        owner_org: str,
        object_ref: str,
        now: datetime,
        algorithm: str | None = None,
    ) -> DataKey:
        """A fresh random data key for `object_ref`, wrapped under `owner_org`'s KEK.

        The organisation's KEK is created on first use. Same as `generate_data_key`
        followed by `store_data_key`.
        """
        data_key = self.generate_data_key(object_ref=object_ref, algorithm=algorithm)
        self.store_data_key(session, data_key, owner_org=owner_org, now=now)
        return data_key

    def generate_data_key(self, *, object_ref: str, algorithm: str | None = None) -> DataKey:
        """A fresh random data key, in memory only until `store_data_key` persists it.

        For work that starts before its transaction (an upload encrypted as it
        arrives): if it is abandoned, no key was ever stored. `algorithm` is
        "AES-256-GCM" or "SM4-GCM", by default the keystore suite's.
        """
        _require_ref("object_ref", object_ref)
        chosen = algorithm or kek_algorithm(self._suite)
        info = algorithm_info(chosen)
        if info.aead is None:
            raise KeyPurposeMismatch("not a data-encryption algorithm", algorithm=chosen)
        return DataKey(
            id=str(uuid.uuid4()),
            key=os.urandom(info.bits // 8),
            object_ref=object_ref,
            algorithm=chosen,
        )

    def store_data_key(
        self, session: Session, data_key: DataKey, *, owner_org: str, now: datetime
    ) -> None:
        """Wrap `data_key` under `owner_org`'s KEK (created on first use) and add its row."""
        _require_ref("owner_org", owner_org)
        _require_ref("object_ref", data_key.object_ref)
        require_aware(now)
        info = algorithm_info(data_key.algorithm)
        if info.aead is None or len(data_key.key) != info.bits // 8:
            raise ValueError(f"a {data_key.algorithm} data key is {info.bits // 8} bytes")
        kek_row = self._active_key(session, KeyPurpose.KEY_WRAPPING, owner_org, now)
        kek = self._unwrap_row(kek_row)
        aad = data_key_aad(data_key.id, data_key.object_ref)
        session.add(
            DataKeyRecord(
                id=data_key.id,
                kek_id=kek_row.id,
                kek_version=kek_row.version,
                wrapped=kek_wrap(kek_row.algorithm, kek, data_key.key, aad),
                object_ref=data_key.object_ref,
                created_at=now,
                algorithm=data_key.algorithm,
            )
        )
        session.flush()
        self._emit(
            session,
            KeyEvent(
                KeyOperation.STORE,
                data_key.id,
                1,
                KeyPurpose.DATA_ENCRYPTION.value,
                data_key.algorithm,
                owner_org,
                f"data key for {data_key.object_ref} wrapped under KEK "
                f"{kek_row.id} v{kek_row.version}",
                state=KeyState.ACTIVE.value,
            ),
        )

    def data_key(
        self, session: Session, data_key_id: str, *, object_ref: str, now: datetime | None = None
    ) -> bytes:
        """Unwrap a data key; `InvalidCiphertext` unless `object_ref` is the one it was made for.

        `KeyDestroyed` once its KEK version was destroyed (crypto-shredded),
        `KeySuspended` while that version is suspended. `now` is only for the `use`
        event when `record_use` is on.
        """
        record = session.get(DataKeyRecord, data_key_id)
        if record is None:
            raise KeyNotFound("data key not found", key_id=data_key_id)
        kek_row = session.get(KeyRecord, (record.kek_id, record.kek_version))
        if kek_row is None:
            raise KeyNotFound("key-encryption key not found", key_id=record.kek_id)
        if kek_row.purpose != KeyPurpose.KEY_WRAPPING:
            raise KeyPurposeMismatch(
                "data key is not wrapped by a key-wrapping key", key_id=record.kek_id
            )
        check_processable(kek_row)
        if not record.wrapped:
            raise KeyDestroyed("data key was destroyed", key_id=data_key_id)
        kek = self._unwrap_row(kek_row)
        # object_ref is not compared with the stored one: it is in the associated data,
        # so a mismatch fails like any other tampering, opaquely.
        plaintext = kek_unwrap(
            kek_row.algorithm, kek, record.wrapped, data_key_aad(data_key_id, object_ref)
        )
        if self._record_use:
            self._emit(
                session,
                KeyEvent(
                    KeyOperation.USE,
                    data_key_id,
                    1,
                    KeyPurpose.DATA_ENCRYPTION.value,
                    record.algorithm,
                    kek_row.owner_org,
                    f"data key for {object_ref} unwrapped",
                ),
            )
        return plaintext

    def delete_data_key(self, session: Session, data_key_id: str) -> None:
        """Delete a data key (crypto-shredding its object once the transaction commits)."""
        record = session.get(DataKeyRecord, data_key_id)
        if record is None:
            raise KeyNotFound("data key not found", key_id=data_key_id)
        kek_row = session.get(KeyRecord, (record.kek_id, record.kek_version))
        event = KeyEvent(
            KeyOperation.DESTROY,
            data_key_id,
            1,
            KeyPurpose.DATA_ENCRYPTION.value,
            record.algorithm,
            None if kek_row is None else kek_row.owner_org,
            f"data key for {record.object_ref} deleted",
            state=KeyState.DESTROYED.value,
        )
        session.delete(record)
        session.flush()
        self._emit(session, event)

    # -- signing keys ------------------------------------------------------------------

    def signing_key(self, session: Session, *, purpose: str, now: datetime) -> SigningKey:
        """The active Ed25519 key for a signing `purpose`, generated on first use.

        `KeyAlgorithmMismatch` if that purpose's active key is not Ed25519 (an SM2
        ledger key under the SM suite): use `signer` for those.
        """
        chosen = _purpose(purpose, SIGNING_PURPOSES, "signing")
        require_aware(now)
        row = self._active_key(session, chosen, None, now)
        if row.algorithm != ALGORITHM_ED25519:
            raise KeyAlgorithmMismatch(
                "the active key is not Ed25519; use KeyStore.signer", algorithm=row.algorithm
            )
        private_raw = self._unwrap_row(row)
        key = SigningKey.from_private_bytes(
            private_raw, key_id=row.id, version=row.version, purpose=chosen
        )
        if key.private_key.public_key().public_bytes_raw() != row.public_material:
            raise InvalidCiphertext()
        self._record(session, row, "signing key loaded")
        return key

    def signer(self, session: Session, *, purpose: str, now: datetime) -> Signer:
        """The active key for a signing `purpose`, of whatever algorithm, made on first use."""
        chosen = _purpose(purpose, SIGNER_PURPOSES, "signing")
        require_aware(now)
        row = self._active_key(session, chosen, None, now)
        info = algorithm_info(row.algorithm)
        if info.signature is None or row.public_material is None:
            raise InvalidCiphertext()
        pair = signatures.load_private(info.signature, self._unwrap_row(row))
        if pair.public_bytes() != row.public_material:
            raise InvalidCiphertext()
        self._record(session, row, "signing key loaded")
        return Signer(
            key_id=row.id,
            version=row.version,
            purpose=chosen,
            algorithm=row.algorithm,
            kid=_kid(row.algorithm, row.public_material),
            public_key=row.public_material,
            _pair=pair,
        )

    def public_keys(self, session: Session, *, purpose: str) -> list[PublicKey]:
        """Every publishable key version of a signing `purpose`, newest first.

        Publishable: pre-active (announced ahead), active and deactivated (still
        verifying what they signed). Suspended, compromised and destroyed versions are
        left out. Each row's wrapped private key is unwrapped (and discarded) before
        its public key is published: the wrap binds the public key, so someone who can
        only write to the database cannot slip in a verification key of their own.
        """
        chosen = _purpose(purpose, SIGNER_PURPOSES, "signing")
        rows = session.scalars(
            select(KeyRecord)
            .where(
                KeyRecord.purpose == chosen.value,
                KeyRecord.state.in_([KeyState.PRE_ACTIVE, KeyState.ACTIVE, KeyState.DEACTIVATED]),
            )
            .order_by(KeyRecord.created_at.desc(), KeyRecord.version.desc())
        ).all()
        published = []
        for row in rows:
            info = ALGORITHMS.get(row.algorithm)
            if info is None or info.signature is None or row.public_material is None:
                raise InvalidCiphertext()
            self._unwrap_row(row)
            published.append(
                PublicKey(
                    **row_fields(PublicKey, row),
                    kid=_kid(row.algorithm, row.public_material),
                    public_key=row.public_material,
                )
            )
        return published

    def public_jwks(self, session: Session, *, purpose: str) -> list[dict[str, str]]:
        """Public JWKs of every publishable key of a signing `purpose`, newest first.

        The keys of `public_keys`; `KeyAlgorithmMismatch` for an algorithm JOSE lacks (SM2).
        """
        _purpose(purpose, SIGNING_PURPOSES, "signing")
        return [
            _public_jwk(k.algorithm, k.public_key)
            for k in self.public_keys(session, purpose=purpose)
        ]

    # -- package internals (crypto.kms, crypto.backup) --------------------------------

    def _emit(self, session: Session, event: KeyEvent) -> None:
        if self._events is not None:
            self._events(session, event)

    def _record(self, session: Session, row: KeyRecord, detail: str) -> None:
        if self._record_use:
            self._emit(session, event_for(KeyOperation.USE, row, detail))

    def _unwrap_row(self, row: KeyRecord) -> bytes:
        if row.state == KeyState.DESTROYED or not row.wrapped_material:
            raise KeyDestroyed("key was destroyed", key_id=row.id, version=row.version)
        if row.parent_id != self._root.key_id:
            raise KeyStoreUnavailable(
                "key is wrapped by a different root key than the configured one",
                key_id=row.id,
                parent_id=row.parent_id,
            )
        return self._root.unwrap(row.wrapped_material, row_aad(row))

    def _versions(self, session: Session, key_id: str) -> list[KeyRecord]:
        """Every version of a key, newest first."""
        return list(
            session.scalars(
                select(KeyRecord).where(KeyRecord.id == key_id).order_by(KeyRecord.version.desc())
            ).all()
        )

    def _active_key(
        self, session: Session, purpose: KeyPurpose, owner_org: str | None, now: datetime
    ) -> KeyRecord:
        """The newest version that may protect now; the first version if there is none.

        A key that has versions but none usable is not silently replaced (an
        organisation whose KEK was shredded stays shredded): the error says why, and
        an administrator generates or rotates (`crypto.kms`).
        """
        key_id = key_id_for(purpose, owner_org)
        rows = self._versions(session, key_id)
        if not rows:
            algorithm = (
                kek_algorithm(self._suite)
                if purpose is KeyPurpose.KEY_WRAPPING
                else signing_algorithm(self._suite, purpose)
            )
            return self._create_key(session, key_id, purpose, owner_org, now, algorithm=algorithm)
        for row in rows:
            if row.state == KeyState.ACTIVE and in_validity(row, now):
                if row.purpose != purpose.value:
                    raise KeyPurposeMismatch("stored key has another purpose", key_id=key_id)
                return row
        if all(row.state == KeyState.DESTROYED for row in rows):
            raise KeyDestroyed("every version of this key was destroyed", key_id=key_id)
        if any(row.state == KeyState.ACTIVE for row in rows):
            raise KeyExpired("no version of this key is valid now", key_id=key_id)
        if rows[0].state == KeyState.SUSPENDED:
            raise KeySuspended("key is suspended", key_id=key_id, version=rows[0].version)
        raise KeyNotActive("no version of this key is active", key_id=key_id)

    def _create_key(
        self,
        session: Session,
        key_id: str,
        purpose: KeyPurpose,
        owner_org: str | None,
        now: datetime,
        *,
        algorithm: str,
        state: KeyState = KeyState.ACTIVE,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        actor: str | None = None,
        detail: str = "generated on first use",
    ) -> KeyRecord:
        """Generate a new version of `key_id` in the crypto module and store it wrapped."""
        info = algorithm_info(algorithm)
        if (purpose is KeyPurpose.KEY_WRAPPING) != (info.aead is not None):
            raise KeyPurposeMismatch(
                f"{algorithm} cannot serve {purpose.value}", purpose=purpose.value
            )
        latest = session.scalar(select(func.max(KeyRecord.version)).where(KeyRecord.id == key_id))
        version = (latest or 0) + 1
        secret, public_material = generate_material(algorithm)
        aad = key_aad(key_id, version, purpose.value, algorithm, owner_org, public_material)
        wrapped = self._root.wrap(secret, aad)
        values: dict[str, Any] = {
            "id": key_id,
            "version": version,
            "purpose": purpose.value,
            "algorithm": algorithm,
            "owner_org": owner_org,
            "state": state.value,
            "wrapped_material": wrapped,
            "public_material": public_material,
            "parent_id": self._root.key_id,
            "created_at": now,
            "not_before": not_before or now,
            "not_after": not_after,
            "state_changed_at": now,
        }
        _insert_if_absent(session, values)
        # Ours, or the row of a concurrent transaction that inserted the same
        # (id, version) first and committed; ON CONFLICT waited for it.
        row = session.get(KeyRecord, (key_id, version), populate_existing=True)
        if row is None:
            raise KeyStoreUnavailable("key row vanished after insert", key_id=key_id)
        if row.wrapped_material == wrapped:
            self._emit(session, event_for(KeyOperation.GENERATE, row, detail, actor=actor))
            self._emit(
                session,
                event_for(
                    KeyOperation.STORE,
                    row,
                    f"stored wrapped under root key {self._root.key_id}",
                    actor=actor,
                ),
            )
        return row

    def _change_state(
        self,
        session: Session,
        row: KeyRecord,
        target: KeyState,
        now: datetime,
        operation: KeyOperation,
        detail: str,
        actor: str | None,
    ) -> None:
        """Move a key version along the transition table and emit `operation`."""
        check_transition(row.state, target)
        row.state = target.value
        row.state_changed_at = now
        if target is KeyState.DESTROYED:
            # Zeroise: the wrapped secret is gone from the row (GB/T 39786-2021 Annex B:
            # destruction irreversible). PostgreSQL keeps the old tuple until VACUUM and
            # backups keep theirs: see crypto.kms for what that means.
            row.wrapped_material = b""
        session.flush()
        self._emit(session, event_for(operation, row, detail, actor=actor))


def _insert_if_absent(session: Session, values: dict[str, Any]) -> None:
    """INSERT ... ON CONFLICT (id, version) DO NOTHING on the key table.

    Chosen over catching IntegrityError in a SAVEPOINT because pysqlite's legacy
    transaction handling makes RELEASE of an outermost SAVEPOINT a COMMIT, which would
    break the rule that only the caller commits.
    """
    dialect = session.get_bind(KeyRecord).dialect.name
    if dialect == "postgresql":
        pg_statement = postgresql.insert(KeyRecord).values(values)
        session.execute(pg_statement.on_conflict_do_nothing(index_elements=["id", "version"]))
    elif dialect == "sqlite":
        lite_statement = sqlite.insert(KeyRecord).values(values)
        session.execute(lite_statement.on_conflict_do_nothing(index_elements=["id", "version"]))
    else:
        raise KeyStoreUnavailable(f"key store needs SQLite or PostgreSQL, not {dialect}")
