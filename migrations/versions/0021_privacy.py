"""privacy: analysis rules, lineages and budgets, approval bindings, commitment openings

Revision ID: 0021
Revises: 0005
Create Date: 2026-12-05 00:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0005"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dataset_analysis_rules",
        sa.Column("dataset_id", sa.String(length=36), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_dataset_analysis_rules_dataset_id_datasets"),
        ),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_dataset_analysis_rules")),
    )
    op.create_table(
        "privacy_dataset_lineages",
        sa.Column("dataset_id", sa.String(length=36), nullable=False),
        sa.Column("lineage", sa.String(length=80), nullable=False),
        sa.Column("rows_digest", sa.String(length=80), nullable=False),
        sa.Column("derived_from", sa.String(length=36), nullable=True),
        sa.Column("fixed_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_privacy_dataset_lineages_dataset_id_datasets"),
        ),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_privacy_dataset_lineages")),
    )
    op.create_index(
        op.f("ix_privacy_dataset_lineages_lineage"), "privacy_dataset_lineages", ["lineage"]
    )
    op.create_table(
        "privacy_lineage_budgets",
        sa.Column("lineage", sa.String(length=80), nullable=False),
        sa.Column("epsilon_spent", sa.Float(), nullable=False),
        sa.Column("delta_spent", sa.Float(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("lineage", name=op.f("pk_privacy_lineage_budgets")),
    )
    op.create_table(
        "privacy_requester_budgets",
        sa.Column("lineage", sa.String(length=80), nullable=False),
        sa.Column("requester_org", sa.String(length=36), nullable=False),
        sa.Column("epsilon_spent", sa.Float(), nullable=False),
        sa.Column("delta_spent", sa.Float(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["requester_org"],
            ["organisations.id"],
            name=op.f("fk_privacy_requester_budgets_requester_org_organisations"),
        ),
        sa.PrimaryKeyConstraint(
            "lineage", "requester_org", name=op.f("pk_privacy_requester_budgets")
        ),
    )
    op.create_table(
        "privacy_lineage_charges",
        sa.Column("computation_id", sa.String(length=36), nullable=False),
        sa.Column("lineage", sa.String(length=80), nullable=False),
        sa.Column("requester_org", sa.String(length=36), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("charged_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["computation_id"],
            ["computations.id"],
            name=op.f("fk_privacy_lineage_charges_computation_id_computations"),
        ),
        sa.PrimaryKeyConstraint(
            "computation_id", "lineage", name=op.f("pk_privacy_lineage_charges")
        ),
    )
    op.create_index(
        op.f("ix_privacy_lineage_charges_requester_org"),
        "privacy_lineage_charges",
        ["requester_org"],
    )
    op.create_table(
        "computation_approval_bindings",
        sa.Column("computation_id", sa.String(length=36), nullable=False),
        sa.Column("provider_org", sa.String(length=36), nullable=False),
        sa.Column("binding", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("approved_by", sa.String(length=128), nullable=False),
        sa.Column("approved_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["computation_id"],
            ["computations.id"],
            name=op.f("fk_computation_approval_bindings_computation_id_computations"),
        ),
        sa.ForeignKeyConstraint(
            ["provider_org"],
            ["organisations.id"],
            name=op.f("fk_computation_approval_bindings_provider_org_organisations"),
        ),
        sa.PrimaryKeyConstraint(
            "computation_id", "provider_org", name=op.f("pk_computation_approval_bindings")
        ),
    )
    op.create_table(
        "computation_commitments",
        sa.Column("computation_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key_hex", sa.String(length=64), nullable=False),
        sa.Column("commitment", sa.String(length=100), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["computation_id"],
            ["computations.id"],
            name=op.f("fk_computation_commitments_computation_id_computations"),
        ),
        sa.PrimaryKeyConstraint("computation_id", "kind", name=op.f("pk_computation_commitments")),
    )


def downgrade() -> None:
    op.drop_table("computation_commitments")
    op.drop_table("computation_approval_bindings")
    op.drop_index(op.f("ix_privacy_lineage_charges_requester_org"), "privacy_lineage_charges")
    op.drop_table("privacy_lineage_charges")
    op.drop_table("privacy_requester_budgets")
    op.drop_table("privacy_lineage_budgets")
    op.drop_index(op.f("ix_privacy_dataset_lineages_lineage"), "privacy_dataset_lineages")
    op.drop_table("privacy_dataset_lineages")
    op.drop_table("dataset_analysis_rules")
