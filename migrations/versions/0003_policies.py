"""policies: policy revisions and decision logs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 16:07:12.412509
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_decisions",
        sa.Column("decision_id", sa.String(length=36), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("path", sa.String(length=256), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("bundle_digest", sa.String(length=64), nullable=False),
        sa.Column("allow", sa.Boolean(), nullable=False),
        sa.Column("subject_id", sa.String(length=128), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("decision_id", name=op.f("pk_audit_decisions")),
    )
    op.create_index(
        "ix_audit_decisions_request_id", "audit_decisions", ["request_id"], unique=False
    )
    op.create_index(
        "ix_audit_decisions_subject_id", "audit_decisions", ["subject_id", "ts"], unique=False
    )
    op.create_index("ix_audit_decisions_ts", "audit_decisions", ["ts"], unique=False)
    op.create_table(
        "policy_revisions",
        sa.Column("revision", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("previous_digest", sa.String(length=64), nullable=True),
        sa.Column("bundle", sa.Text(), nullable=False),
        sa.Column("changes", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tests_passed", sa.Integer(), nullable=False),
        sa.Column("activated_by", sa.String(length=128), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("revision", name=op.f("pk_policy_revisions")),
    )
    op.create_index("ix_policy_revisions_digest", "policy_revisions", ["digest"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_policy_revisions_digest", table_name="policy_revisions")
    op.drop_table("policy_revisions")
    op.drop_index("ix_audit_decisions_ts", table_name="audit_decisions")
    op.drop_index("ix_audit_decisions_subject_id", table_name="audit_decisions")
    op.drop_index("ix_audit_decisions_request_id", table_name="audit_decisions")
    op.drop_table("audit_decisions")
