"""computations: contracts, jobs, privacy budgets, provider nodes

Revision ID: 0005
Revises: 0006
Create Date: 2026-11-26 16:30:26.644904
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "computations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("requester_org", sa.String(length=36), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("operator", sa.String(length=64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("purpose", sa.String(length=500), nullable=False),
        sa.Column("legal_basis", sa.String(length=200), nullable=True),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("obligations", sa.JSON(), nullable=False),
        sa.Column("decisions", sa.JSON(), nullable=False),
        sa.Column("security_model", sa.JSON(), nullable=False),
        sa.Column("transitions", sa.JSON(), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("epsilon_spent", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("secret_key_id", sa.String(length=36), nullable=True),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("result_key_id", sa.String(length=36), nullable=True),
        sa.Column("result_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("result_digest", sa.String(length=64), nullable=True),
        sa.Column("retain_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["requester_org"],
            ["organisations.id"],
            name=op.f("fk_computations_requester_org_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_computations")),
    )
    op.create_index(
        op.f("ix_computations_requester_org"), "computations", ["requester_org"], unique=False
    )
    op.create_index(op.f("ix_computations_state"), "computations", ["state"], unique=False)
    op.create_table(
        "contracts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("consumer_org", sa.String(length=36), nullable=False),
        sa.Column("provider_org", sa.String(length=36), nullable=False),
        sa.Column("datasets", sa.JSON(), nullable=False),
        sa.Column("purpose", sa.String(length=500), nullable=False),
        sa.Column("agreement_id", sa.String(length=128), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("proposed_by", sa.String(length=64), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signed_by", sa.String(length=64), nullable=True),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("terminated_by", sa.String(length=64), nullable=True),
        sa.Column("terminated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("termination_reason", sa.String(length=500), nullable=True),
        sa.Column("transitions", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["consumer_org"],
            ["organisations.id"],
            name=op.f("fk_contracts_consumer_org_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["provider_org"],
            ["organisations.id"],
            name=op.f("fk_contracts_provider_org_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contracts")),
    )
    op.create_index(op.f("ix_contracts_consumer_org"), "contracts", ["consumer_org"], unique=False)
    op.create_index(op.f("ix_contracts_provider_org"), "contracts", ["provider_org"], unique=False)
    op.create_index(op.f("ix_contracts_status"), "contracts", ["status"], unique=False)
    op.create_table(
        "provider_nodes",
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("url", sa.String(length=500), nullable=True),
        sa.Column("credentials_key_id", sa.String(length=36), nullable=True),
        sa.Column("credentials_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("registered_by", sa.String(length=64), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_provider_nodes_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_provider_nodes")),
    )
    op.create_table(
        "computation_inputs",
        sa.Column("computation_id", sa.String(length=36), nullable=False),
        sa.Column("dataset_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("provider_org", sa.String(length=36), nullable=False),
        sa.Column("contract_id", sa.String(length=36), nullable=True),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("custody", sa.String(length=16), nullable=False),
        sa.Column("approval", sa.String(length=16), nullable=False),
        sa.Column("approved_by", sa.String(length=64), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("release_approval", sa.String(length=16), nullable=False),
        sa.Column("release_approved_by", sa.String(length=64), nullable=True),
        sa.Column("release_approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["computation_id"],
            ["computations.id"],
            name=op.f("fk_computation_inputs_computation_id_computations"),
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_computation_inputs_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(
            ["provider_org"],
            ["organisations.id"],
            name=op.f("fk_computation_inputs_provider_org_organisations"),
        ),
        sa.PrimaryKeyConstraint("computation_id", "dataset_id", name=op.f("pk_computation_inputs")),
    )
    op.create_index(
        op.f("ix_computation_inputs_provider_org"),
        "computation_inputs",
        ["provider_org"],
        unique=False,
    )
    op.create_table(
        "computation_privacy_budget",
        sa.Column("dataset_id", sa.String(length=36), nullable=False),
        sa.Column("epsilon_limit", sa.Float(), nullable=False),
        sa.Column("delta_limit", sa.Float(), nullable=False),
        sa.Column("epsilon_spent", sa.Float(), nullable=False),
        sa.Column("delta_spent", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_computation_privacy_budget_dataset_id_datasets"),
        ),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_computation_privacy_budget")),
    )
    op.create_table(
        "computation_privacy_charges",
        sa.Column("dataset_id", sa.String(length=36), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("charged_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_computation_privacy_charges_dataset_id_datasets"),
        ),
        sa.PrimaryKeyConstraint(
            "dataset_id", "job_id", name=op.f("pk_computation_privacy_charges")
        ),
    )
    op.create_table(
        "node_datasets",
        sa.Column("dataset_id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("asset_ref", sa.String(length=200), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_node_datasets_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_node_datasets_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_node_datasets")),
    )
    op.create_index(op.f("ix_node_datasets_org_id"), "node_datasets", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_node_datasets_org_id"), table_name="node_datasets")
    op.drop_table("node_datasets")
    op.drop_table("computation_privacy_charges")
    op.drop_table("computation_privacy_budget")
    op.drop_index(op.f("ix_computation_inputs_provider_org"), table_name="computation_inputs")
    op.drop_table("computation_inputs")
    op.drop_table("provider_nodes")
    op.drop_index(op.f("ix_contracts_status"), table_name="contracts")
    op.drop_index(op.f("ix_contracts_provider_org"), table_name="contracts")
    op.drop_index(op.f("ix_contracts_consumer_org"), table_name="contracts")
    op.drop_table("contracts")
    op.drop_index(op.f("ix_computations_state"), table_name="computations")
    op.drop_index(op.f("ix_computations_requester_org"), table_name="computations")
    op.drop_table("computations")
