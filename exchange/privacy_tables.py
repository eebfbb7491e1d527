"""Tables of the privacy layer: analysis rules, lineages and budgets, approval bindings, openings.

Owned by `exchange.analysis_rules`, `exchange.budgets`, `exchange.approval_binding` and
`exchange.commitments` (docs/privacy.md §3, §4, §7); one Alembic revision (0021).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from exchange.models import ChargeColumns, ExchangeBase, SpentColumns

__all__ = [
    "AnalysisRulesRecord",
    "ApprovalBindingRecord",
    "CommitmentOpening",
    "DatasetLineage",
    "LineageBudget",
    "LineageCharge",
    "RequesterBudget",
]


class AnalysisRulesRecord(ExchangeBase):
    """A dataset's analysis rules as its provider set them (the newest version)."""

    __tablename__ = "dataset_analysis_rules"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime]


class DatasetLineage(ExchangeBase):
    """Which lineage a dataset's budget is kept on; fixed when it is first charged."""

    __tablename__ = "privacy_dataset_lineages"

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    lineage: Mapped[str] = mapped_column(String(80), index=True)
    rows_digest: Mapped[str] = mapped_column(String(80))
    derived_from: Mapped[str | None] = mapped_column(String(36))
    fixed_at: Mapped[datetime]


class LineageBudget(SpentColumns, ExchangeBase):
    """What every requester together has spent on one lineage (the row locked per charge)."""

    __tablename__ = "privacy_lineage_budgets"

    lineage: Mapped[str] = mapped_column(String(80), primary_key=True)


class RequesterBudget(SpentColumns, ExchangeBase):
    """What one requesting organisation has spent on one lineage."""

    __tablename__ = "privacy_requester_budgets"

    lineage: Mapped[str] = mapped_column(String(80), primary_key=True)
    requester_org: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)


class LineageCharge(ChargeColumns, ExchangeBase):
    """One accepted computation's charge on one lineage (never refunded)."""

    __tablename__ = "privacy_lineage_charges"

    computation_id: Mapped[str] = mapped_column(ForeignKey("computations.id"), primary_key=True)
    lineage: Mapped[str] = mapped_column(String(80), primary_key=True)
    requester_org: Mapped[str] = mapped_column(String(36), index=True)


class ApprovalBindingRecord(ExchangeBase):
    """The query one provider approved for one computation (`exchange.approval_binding`)."""

    __tablename__ = "computation_approval_bindings"

    computation_id: Mapped[str] = mapped_column(ForeignKey("computations.id"), primary_key=True)
    provider_org: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    binding: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(80))
    approved_by: Mapped[str] = mapped_column(String(128))
    approved_at: Mapped[datetime]


class CommitmentOpening(ExchangeBase):
    """The key that opens one keyed ledger commitment of a computation (`kind`: query, result)."""

    __tablename__ = "computation_commitments"

    computation_id: Mapped[str] = mapped_column(ForeignKey("computations.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key_hex: Mapped[str] = mapped_column(String(64))
    commitment: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]
