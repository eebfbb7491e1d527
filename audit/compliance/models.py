"""Compliance tables: signed check runs, the decision-log sink cursor, retention runs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from audit.models import AuditBase, UuidKey


class ComplianceRun(AuditBase):
    """One `pdx compliance check` run: the canonical report, its digest and signature."""

    __tablename__ = "compliance_runs"

    id: Mapped[UuidKey]
    started_at: Mapped[datetime]
    by: Mapped[str] = mapped_column(String(128))
    passed: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    not_applicable: Mapped[int] = mapped_column(Integer)
    not_automated: Mapped[int] = mapped_column(Integer)
    tree_size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[str] = mapped_column(String(128))
    report: Mapped[str] = mapped_column(Text)  # canonical JSON of the report
    digest: Mapped[str] = mapped_column(String(80))
    signature: Mapped[str] = mapped_column(Text)  # base64
    signer_key_id: Mapped[str] = mapped_column(String(128))
    ledger_index: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_compliance_runs_started_at", "started_at"),)


class SinkCursor(AuditBase):
    """How far a decision-log sink has acknowledged (the database stays the log)."""

    __tablename__ = "audit_sink_cursors"

    sink: Mapped[str] = mapped_column(String(64), primary_key=True)
    ts: Mapped[datetime | None]
    decision_id: Mapped[str | None] = mapped_column(String(36))
    delivered: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class RetentionRun(AuditBase):
    """One scheduled retention run: what was shredded, what was kept, and why."""

    __tablename__ = "retention_runs"

    id: Mapped[UuidKey]
    ran_at: Mapped[datetime]
    results_shredded: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text)  # JSON
    ledger_index: Mapped[int | None] = mapped_column(BigInteger)


class RiskReport(AuditBase):
    """A data-security risk assessment of important data (DSL art. 30), signed."""

    __tablename__ = "risk_reports"

    id: Mapped[UuidKey]
    generated_at: Mapped[datetime]
    by: Mapped[str] = mapped_column(String(128))
    report: Mapped[str] = mapped_column(Text)  # canonical JSON
    digest: Mapped[str] = mapped_column(String(80))
    signature: Mapped[str] = mapped_column(Text)
    ledger_index: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_risk_reports_generated_at", "generated_at"),)
