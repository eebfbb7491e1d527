"""Tables `exchange` owns: organisations, service clients, datasets and their fields."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from audit.models import NAMING_CONVENTION, UtcDateTime


class ExchangeBase(DeclarativeBase):
    """Declarative base for the tables `exchange` owns."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, list[Any]: JSON}


class Organisation(ExchangeBase):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    clients: Mapped[list[Client]] = relationship(back_populates="organisation")


class Client(ExchangeBase):
    """A service client (OAuth 2 client-credentials) belonging to one organisation."""

    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the public client_id
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(256))
    roles: Mapped[list[str]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    organisation: Mapped[Organisation] = relationship(back_populates="clients")

    __table_args__ = (UniqueConstraint("org_id", "name", name="uq_clients_org_name"),)


class Dataset(ExchangeBase):
    """A registered dataset: catalogue metadata (COMPLIANCE.md §1), content facts, custody."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner_org: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(2000))
    classification_path: Mapped[list[str]] = mapped_column(JSON)
    level: Mapped[str] = mapped_column(String(16))
    impact_object: Mapped[str] = mapped_column(String(32))
    impact_degree: Mapped[str] = mapped_column(String(32))
    processing_degree: Mapped[str] = mapped_column(String(16))
    source_agency: Mapped[str] = mapped_column(String(200))
    source_system: Mapped[str | None] = mapped_column(String(200))
    accountable_department: Mapped[str] = mapped_column(String(200))
    pi: Mapped[bool] = mapped_column(Boolean)
    sensitive_pi: Mapped[bool] = mapped_column(Boolean)
    important_data_catalogue: Mapped[bool] = mapped_column(Boolean)
    share_attribute: Mapped[str] = mapped_column(String(16))
    open_attribute: Mapped[str] = mapped_column(String(16))
    graded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    graded_by: Mapped[str] = mapped_column(String(128))
    next_review_at: Mapped[datetime] = mapped_column(UtcDateTime)
    custody: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    sm3: Mapped[str] = mapped_column(String(64))
    data_key_id: Mapped[str] = mapped_column(String(36))
    scan: Mapped[dict[str, Any]] = mapped_column(JSON)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime)
    registered_by: Mapped[str] = mapped_column(String(128))

    fields: Mapped[list[DatasetField]] = relationship(
        back_populates="dataset", order_by="DatasetField.position", cascade="all, delete-orphan"
    )

    __table_args__ = (UniqueConstraint("owner_org", "name", name="uq_datasets_owner_name"),)


class DatasetField(ExchangeBase):
    """One column of a dataset with its own grading (就高从严 is checked across these)."""

    __tablename__ = "dataset_fields"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16))
    pi: Mapped[bool] = mapped_column(Boolean)
    sensitive_pi: Mapped[bool] = mapped_column(Boolean)
    non_empty: Mapped[int] = mapped_column(BigInteger)
    detections: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(String(500))

    dataset: Mapped[Dataset] = relationship(back_populates="fields")


class TokenFamily(ExchangeBase):
    """A chain of refresh tokens from one login; revoking it kills every token in it."""

    __tablename__ = "auth_token_families"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(64))
    # RFC 8705: the certificate the family is bound to (x5t#S256), when issued over mTLS.
    cnf_x5t: Mapped[str | None] = mapped_column(String(64))


class RefreshToken(ExchangeBase):
    """One refresh token, stored as its SHA-256; usable once (rotation on use)."""

    __tablename__ = "auth_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(ForeignKey("auth_token_families.id"), index=True)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class RevokedToken(ExchangeBase):
    """An access token revoked before expiry (RFC 7009); kept until it would have expired."""

    __tablename__ = "auth_revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    revoked_at: Mapped[datetime] = mapped_column(UtcDateTime)
