"""Key hierarchy: root key (backend) → one KEK per organisation → one data key per object."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crypto.backends import RootKeyBackend
from crypto.errors import InvalidCiphertext, KeyNotFound, KeyPurposeMismatch, KeyStoreUnavailable
from crypto.models import STATE_ACTIVE, STATE_DESTROYED, DataKeyRecord, KeyRecord
from crypto.suites import keywrap


class KeyPurpose(StrEnum):
    """What a key may be used for: one purpose per key (GB/T 39786-2021 Annex B)."""

    DATA_ENCRYPTION = "data-encryption"
    KEY_WRAPPING = "key-wrapping"
    SIGNING = "signing"
    TOKEN_SIGNING = "token-signing"
    LEDGER_SIGNING = "ledger-signing"
    TLS_CA = "tls-ca"


# Purposes served by Ed25519 signing keys. TLS_CA is left out until the KMS picks the
# CA algorithm (Ed25519 certificates are not accepted by browsers).
SIGNING_PURPOSES = frozenset(
    {KeyPurpose.SIGNING, KeyPurpose.TOKEN_SIGNING, KeyPurpose.LEDGER_SIGNING}
)

ALGORITHM_AES_256_GCM = "AES-256-GCM"
ALGORITHM_ED25519 = "Ed25519"

DATA_KEY_SIZE = 32
_MAX_REF_LENGTH = 255  # String(255) columns: owner_org, object_ref

# Key ids are uuid5 of (purpose, owner) in this namespace, so two transactions creating
# the same organisation's first KEK collide on the primary key instead of making two.
_KEY_ID_NAMESPACE = uuid.UUID("8e1c3753-6d75-481f-91c4-e998f30fc892")
_KEY_AAD_LABEL = b"pdx crypto_keys v1"
_DATA_KEY_AAD_LABEL = b"pdx crypto_data_keys v1"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _ed25519_public_jwk(public_raw: bytes) -> dict[str, str]:
    """RFC 8037 section 2 public JWK with an RFC 7638 thumbprint as `kid`."""
    x = _b64url(public_raw)
    # RFC 7638 section 3.2: the required members only, lexicographic order, no spaces.
    required = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    kid = _b64url(hashlib.sha256(required.encode("utf-8")).digest())
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}


@dataclass(frozen=True, eq=False)
class DataKey:
    """A data key in plaintext, for this process's memory only; `repr` hides the key."""

    id: str
    key: bytes
    object_ref: str

    def __repr__(self) -> str:
        return f"DataKey(id={self.id!r}, object_ref={self.object_ref!r}, key=<hidden>)"


@dataclass(frozen=True, eq=False)
class SigningKey:
    """An Ed25519 signing key; `kid` is the RFC 7638 thumbprint of its public JWK.

    `private_key` is what PyJWT takes for `algorithm="EdDSA"`; `key_id` and `version`
    name the stored key version it was unwrapped from.
    """

    private_key: Ed25519PrivateKey = field(repr=False)
    key_id: str
    version: int
    purpose: KeyPurpose
    kid: str = field(init=False)
    _public_jwk: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        jwk = _ed25519_public_jwk(self.private_key.public_key().public_bytes_raw())
        object.__setattr__(self, "_public_jwk", jwk)
        object.__setattr__(self, "kid", jwk["kid"])

    @classmethod
    def from_private_bytes(
        cls, raw: bytes, *, key_id: str, version: int, purpose: KeyPurpose
    ) -> SigningKey:
        """Build from a 32-byte RFC 8032 private key (seed)."""
        private_key = Ed25519PrivateKey.from_private_bytes(raw)
        return cls(private_key=private_key, key_id=key_id, version=version, purpose=purpose)

    def public_jwk(self) -> dict[str, str]:
        return dict(self._public_jwk)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


def _require_ref(name: str, value: str) -> None:
    if not value or len(value) > _MAX_REF_LENGTH:
        raise ValueError(f"{name} must be 1 to {_MAX_REF_LENGTH} characters")


def _signing_purpose(purpose: str) -> KeyPurpose:
    try:
        chosen = KeyPurpose(purpose)
    except ValueError:
        raise KeyPurposeMismatch("unknown key purpose", purpose=purpose) from None
    if chosen not in SIGNING_PURPOSES:
        raise KeyPurposeMismatch("not a signing purpose", purpose=purpose)
    return chosen


def _key_id(purpose: KeyPurpose, owner_org: str | None) -> str:
    owner = "" if owner_org is None else f"org:{owner_org}"
    return str(uuid.uuid5(_KEY_ID_NAMESPACE, f"{purpose.value}\x00{owner}"))


def _key_aad(
    key_id: str,
    version: int,
    purpose: str,
    algorithm: str,
    owner_org: str | None,
    public_material: bytes | None,
) -> bytes:
    # Everything that says what the wrapped material is and who owns it; not the
    # lifecycle state, which changes, nor parent_id, which the wrapping key itself is.
    return keywrap.encode_aad(
        _KEY_AAD_LABEL, key_id, version, purpose, algorithm, owner_org, public_material
    )


def _row_aad(row: KeyRecord) -> bytes:
    return _key_aad(
        row.id, row.version, row.purpose, row.algorithm, row.owner_org, row.public_material
    )


def _data_key_aad(data_key_id: str, object_ref: str) -> bytes:
    return keywrap.encode_aad(_DATA_KEY_AAD_LABEL, data_key_id, object_ref)


class KeyStore:
    """Keys in the caller's database session, wrapped under a root key backend.

    Every method takes the caller's `Session` and only adds, deletes and flushes:
    the caller commits or rolls back, and a rolled-back transaction leaves no key.
    """

    def __init__(self, root: RootKeyBackend) -> None:
        self._root = root

    # -- data keys ---------------------------------------------------------------------

    def new_data_key(
        self, session: Session, *, owner_org: str, object_ref: str, now: datetime
    ) -> DataKey:
        """A fresh random data key for `object_ref`, wrapped under `owner_org`'s KEK.

        The organisation's KEK is created on first use. Same as `generate_data_key`
        followed by `store_data_key`.
        """
        data_key = self.generate_data_key(object_ref=object_ref)
        self.store_data_key(session, data_key, owner_org=owner_org, now=now)
        return data_key

    def generate_data_key(self, *, object_ref: str) -> DataKey:
        """A fresh random data key, in memory only until `store_data_key` persists it.

        For work that starts before its transaction (an upload encrypted as it
        arrives): if it is abandoned, no key was ever stored.
        """
        _require_ref("object_ref", object_ref)
        return DataKey(id=str(uuid.uuid4()), key=os.urandom(DATA_KEY_SIZE), object_ref=object_ref)

    def store_data_key(
        self, session: Session, data_key: DataKey, *, owner_org: str, now: datetime
    ) -> None:
        """Wrap `data_key` under `owner_org`'s KEK (created on first use) and add its row."""
        _require_ref("owner_org", owner_org)
        _require_ref("object_ref", data_key.object_ref)
        _require_aware(now)
        if len(data_key.key) != DATA_KEY_SIZE:
            raise ValueError(f"a data key is {DATA_KEY_SIZE} bytes")
        kek_row = self._active_key(session, KeyPurpose.KEY_WRAPPING, owner_org, now)
        kek = self._unwrap_row(kek_row)
        aad = _data_key_aad(data_key.id, data_key.object_ref)
        session.add(
            DataKeyRecord(
                id=data_key.id,
                kek_id=kek_row.id,
                kek_version=kek_row.version,
                wrapped=keywrap.wrap(kek, data_key.key, aad),
                object_ref=data_key.object_ref,
                created_at=now,
            )
        )
        session.flush()

    def data_key(self, session: Session, data_key_id: str, *, object_ref: str) -> bytes:
        """Unwrap a data key; `InvalidCiphertext` unless `object_ref` is the one it was made for."""
        record = session.get(DataKeyRecord, data_key_id)
        if record is None:
            raise KeyNotFound("data key not found", key_id=data_key_id)
        kek_row = session.get(KeyRecord, (record.kek_id, record.kek_version))
        if kek_row is None or kek_row.state == STATE_DESTROYED:
            raise KeyNotFound("key-encryption key not found", key_id=record.kek_id)
        if kek_row.purpose != KeyPurpose.KEY_WRAPPING:
            raise KeyPurposeMismatch(
                "data key is not wrapped by a key-wrapping key", key_id=record.kek_id
            )
        kek = self._unwrap_row(kek_row)
        # object_ref is not compared with the stored one: it is in the associated data,
        # so a mismatch fails like any other tampering, opaquely.
        return keywrap.unwrap(kek, record.wrapped, _data_key_aad(data_key_id, object_ref))

    def delete_data_key(self, session: Session, data_key_id: str) -> None:
        """Delete a data key (crypto-shredding its object once the transaction commits)."""
        record = session.get(DataKeyRecord, data_key_id)
        if record is None:
            raise KeyNotFound("data key not found", key_id=data_key_id)
        session.delete(record)
        session.flush()

    # -- signing keys ------------------------------------------------------------------

    def signing_key(self, session: Session, *, purpose: str, now: datetime) -> SigningKey:
        """The active Ed25519 key for a signing `purpose`, generated on first use."""
        chosen = _signing_purpose(purpose)
        _require_aware(now)
        row = self._active_key(session, chosen, None, now)
        private_raw = self._unwrap_row(row)
        key = SigningKey.from_private_bytes(
            private_raw, key_id=row.id, version=row.version, purpose=chosen
        )
        if key.private_key.public_key().public_bytes_raw() != row.public_material:
            raise InvalidCiphertext()
        return key

    def public_jwks(self, session: Session, *, purpose: str) -> list[dict[str, str]]:
        """Public JWKs of every non-destroyed key of a signing `purpose`, newest first.

        Each row's wrapped private key is unwrapped (and discarded) before its public
        key is published: the wrap binds the public key, so someone who can only write
        to the database cannot slip in a verification key of their own.
        """
        chosen = _signing_purpose(purpose)
        rows = session.scalars(
            select(KeyRecord)
            .where(KeyRecord.purpose == chosen.value, KeyRecord.state != STATE_DESTROYED)
            .order_by(KeyRecord.created_at.desc(), KeyRecord.version.desc())
        ).all()
        jwks = []
        for row in rows:
            if row.algorithm != ALGORITHM_ED25519 or row.public_material is None:
                raise InvalidCiphertext()
            self._unwrap_row(row)
            jwks.append(_ed25519_public_jwk(row.public_material))
        return jwks

    # -- internals ---------------------------------------------------------------------

    def _unwrap_row(self, row: KeyRecord) -> bytes:
        if row.parent_id != self._root.key_id:
            raise KeyStoreUnavailable(
                "key is wrapped by a different root key than the configured one",
                key_id=row.id,
                parent_id=row.parent_id,
            )
        return self._root.unwrap(row.wrapped_material, _row_aad(row))

    def _active_key(
        self, session: Session, purpose: KeyPurpose, owner_org: str | None, now: datetime
    ) -> KeyRecord:
        key_id = _key_id(purpose, owner_org)
        row = session.scalars(
            select(KeyRecord)
            .where(KeyRecord.id == key_id, KeyRecord.state == STATE_ACTIVE)
            .order_by(KeyRecord.version.desc())
            .limit(1)
        ).first()
        if row is None:
            row = self._create_key(session, key_id, purpose, owner_org, now)
        if row.purpose != purpose.value:
            raise KeyPurposeMismatch("stored key has another purpose", key_id=key_id)
        return row

    def _create_key(
        self,
        session: Session,
        key_id: str,
        purpose: KeyPurpose,
        owner_org: str | None,
        now: datetime,
    ) -> KeyRecord:
        latest = session.scalar(select(func.max(KeyRecord.version)).where(KeyRecord.id == key_id))
        version = (latest or 0) + 1
        public_material: bytes | None
        if purpose is KeyPurpose.KEY_WRAPPING:
            algorithm = ALGORITHM_AES_256_GCM
            secret = os.urandom(keywrap.WRAP_KEY_SIZE)
            public_material = None
        else:
            algorithm = ALGORITHM_ED25519
            private_key = Ed25519PrivateKey.generate()
            secret = private_key.private_bytes_raw()
            public_material = private_key.public_key().public_bytes_raw()
        aad = _key_aad(key_id, version, purpose.value, algorithm, owner_org, public_material)
        values: dict[str, Any] = {
            "id": key_id,
            "version": version,
            "purpose": purpose.value,
            "algorithm": algorithm,
            "owner_org": owner_org,
            "state": STATE_ACTIVE,
            "wrapped_material": self._root.wrap(secret, aad),
            "public_material": public_material,
            "parent_id": self._root.key_id,
            "created_at": now,
        }
        _insert_if_absent(session, values)
        # Ours, or the row of a concurrent transaction that inserted the same
        # (id, version) first and committed; ON CONFLICT waited for it.
        row = session.get(KeyRecord, (key_id, version), populate_existing=True)
        if row is None:
            raise KeyStoreUnavailable("key row vanished after insert", key_id=key_id)
        return row


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
