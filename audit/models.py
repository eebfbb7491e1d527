"""Audit tables: one row per audited request or event (docs/compliance.md AUD-01 fields)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from sqlalchemy import BigInteger, Index, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crypto.sqltypes import NAMING_CONVENTION, UtcDateTime

__all__ = ["NAMING_CONVENTION", "AuditBase", "AuditRecord", "UtcDateTime", "UuidKey"]


class AuditBase(DeclarativeBase):
    """Declarative base for the tables `audit` owns."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Every time the audit tables keep is UTC, read back timezone-aware.
    type_annotation_map = {datetime: UtcDateTime}


# A row's key: a UUID in its 36-character text form.
UuidKey = Annotated[str, mapped_column(String(36), primary_key=True)]


class AuditRecord(AuditBase):
    """An audit record with the 等保 2.0 level-3 fields, append-only by convention.

    The ledger issue adds tamper evidence (Merkle log with signed checkpoints); rows
    here are never updated or deleted by the platform.
    """

    __tablename__ = "audit_records"

    id: Mapped[UuidKey]
    ts: Mapped[datetime]
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
