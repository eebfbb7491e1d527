"""Audit tables: one row per audited request or event (COMPLIANCE.md §5 fields)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Index, MetaData, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names so Alembic can alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite returns naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass timezone-aware UTC times")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AuditBase(DeclarativeBase):
    """Declarative base for the tables `audit` owns."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class AuditRecord(AuditBase):
    """An audit record with the 等保 2.0 level-3 fields, append-only by convention.

    The ledger issue adds tamper evidence (Merkle log with signed checkpoints); rows
    here are never updated or deleted by the platform.
    """

    __tablename__ = "audit_records"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime)
    subject_id: Mapped[str | None] = mapped_column(String(128))
    subject_org: Mapped[str | None] = mapped_column(String(36))
    subject_ip: Mapped[str | None] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    result: Mapped[str] = mapped_column(String(16))
    event_type: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str | None] = mapped_column(String(256))
    data_level: Mapped[str | None] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64))
    decision_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(String(512))
    # The ledger entry written in the same transaction (authorised operations only).
    ledger_index: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_audit_records_ts", "ts"),
        Index("ix_audit_records_object_id", "object_id"),
        Index("ix_audit_records_event_type", "event_type"),
    )
