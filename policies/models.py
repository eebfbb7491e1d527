"""Tables `policies` owns: the revision history of activated policy bundles."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crypto.sqltypes import NAMING_CONVENTION, UtcDateTime


class PolicyBase(DeclarativeBase):
    """Declarative base for the tables `policies` owns (its own metadata, like each package)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class PolicyRevision(PolicyBase):
    """One activation: the whole bundle as activated, append-only.

    The highest revision is the active one; going back to an older bundle is a new
    revision holding the old content, so the history reads like the ledger does.
    """

    __tablename__ = "policy_revisions"

    revision: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    digest: Mapped[str] = mapped_column(String(64))
    previous_digest: Mapped[str | None] = mapped_column(String(64))
    bundle: Mapped[str] = mapped_column(Text)  # canonical JSON of PolicyBundle.to_json()
    changes: Mapped[str] = mapped_column(Text)  # JSON list of change descriptions
    description: Mapped[str] = mapped_column(Text)
    tests_passed: Mapped[int] = mapped_column(Integer)
    activated_by: Mapped[str] = mapped_column(String(128))
    activated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_policy_revisions_digest", "digest"),)
