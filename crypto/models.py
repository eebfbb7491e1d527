"""SQLAlchemy tables of the key store, on their own declarative base (`CryptoBase`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    DateTime,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    MetaData,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, synonym

from crypto.lifecycle import KeyState
from crypto.sqltypes import NAMING_CONVENTION

# Kept for code that compared with these names before `KeyState` existed.
STATE_ACTIVE = KeyState.ACTIVE.value
STATE_DESTROYED = KeyState.DESTROYED.value

# Data keys stored before the column existed were all AES-256-GCM.
_DEFAULT_DATA_KEY_ALGORITHM = "AES-256-GCM"


class CryptoBase(DeclarativeBase):
    """Metadata of every `crypto_` table; migrations include `CryptoBase.metadata`."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class KeyRecord(CryptoBase):
    """One version of a managed key: a KEK, or a signing key pair.

    `wrapped_material` is the private or secret key wrapped by the parent named in
    `parent_id` (the root backend's `key_id`); the wrap's associated data binds id,
    version, purpose, algorithm, owner and public key, so a row edited in the database
    no longer unwraps. Destruction overwrites it with the empty string.

    `state` is a `crypto.lifecycle.KeyState`; `state_changed_at` is when it last
    changed (for an active version: since when it is active, which the rotation policy
    reads). `not_before`/`not_after` bound the period in which the version may protect
    new data; NULL means "from creation" and "no end".
    """

    __tablename__ = "crypto_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32), index=True)
    algorithm: Mapped[str] = mapped_column(String(32))
    owner_org: Mapped[str | None] = mapped_column(String(255), index=True)
    state: Mapped[str] = mapped_column(String(16))
    wrapped_material: Mapped[bytes] = mapped_column(LargeBinary)
    public_material: Mapped[bytes | None] = mapped_column(LargeBinary)
    parent_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    not_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    state_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # What every view of a key version (and `DestroyRequestRecord`) calls the key's id.
    key_id: Mapped[str] = synonym("id")


class DataKeyRecord(CryptoBase):
    """A data key for one object, wrapped under a version of its owner's KEK.

    `wrapped` becomes the empty string when the KEK version above it is destroyed
    (crypto-shredding), so the row records that the key existed but nothing remains.
    """

    __tablename__ = "crypto_data_keys"
    __table_args__ = (
        ForeignKeyConstraint(
            ["kek_id", "kek_version"],
            ["crypto_keys.id", "crypto_keys.version"],
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kek_id: Mapped[str] = mapped_column(String(36), index=True)
    kek_version: Mapped[int] = mapped_column(Integer)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    object_ref: Mapped[str] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    algorithm: Mapped[str] = mapped_column(
        String(32),
        default=_DEFAULT_DATA_KEY_ALGORITHM,
        server_default=_DEFAULT_DATA_KEY_ALGORITHM,
    )


class DestroyRequestRecord(CryptoBase):
    """A pending (or decided) request to destroy a key: the first half of the two-person rule.

    `version` NULL means every version of `key_id` (crypto-shredding an organisation's
    KEK). `status` is `pending`, `executed` or `cancelled`; a pending request past
    `expires_at` can no longer be approved.
    """

    __tablename__ = "crypto_destroy_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(36), index=True)
    version: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(128))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The people behind the two halves (issue 11) and who created the requester.
    requested_by_person: Mapped[str | None] = mapped_column(String(128))
    requested_by_sponsor: Mapped[str | None] = mapped_column(String(128))
    decided_by_person: Mapped[str | None] = mapped_column(String(128))
