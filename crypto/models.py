"""SQLAlchemy tables of the key store, on their own declarative base (`CryptoBase`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKeyConstraint, Integer, LargeBinary, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Lifecycle states (GB/T 39786-2021 Annex B). Only "active" is produced for now; the
# KMS adds the rest, and "destroyed" keys are the ones never published again.
STATE_ACTIVE = "active"
STATE_DESTROYED = "destroyed"


class CryptoBase(DeclarativeBase):
    """Metadata of every `crypto_` table; migrations include `CryptoBase.metadata`."""

    # Deterministic constraint names, so Alembic autogenerate can drop or alter them.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class KeyRecord(CryptoBase):
    """One version of a managed key: a KEK, or a signing key pair.

    `wrapped_material` is the private or secret key wrapped by the parent named in
    `parent_id` (the root backend's `key_id`); the wrap's associated data binds id,
    version, purpose, algorithm, owner and public key, so a row edited in the database
    no longer unwraps.
    """

    __tablename__ = "crypto_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32), index=True)
    algorithm: Mapped[str] = mapped_column(String(32))
    owner_org: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    wrapped_material: Mapped[bytes] = mapped_column(LargeBinary)
    public_material: Mapped[bytes | None] = mapped_column(LargeBinary)
    parent_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DataKeyRecord(CryptoBase):
    """A data key for one object, wrapped under a version of its owner's KEK."""

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
