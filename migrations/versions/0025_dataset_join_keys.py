"""exchange: columns a provider declared joinable (private joins, issue 18)

Revision ID: 0025
Revises: 0005
Create Date: 2026-12-04 23:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_join_keys",
        sa.Column("dataset_id", sa.String(length=36), nullable=False),
        sa.Column("column", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("declared_by", sa.String(length=128), nullable=False),
        sa.Column("declared_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_dataset_join_keys_dataset_id_datasets"),
        ),
        sa.PrimaryKeyConstraint("dataset_id", "column", name=op.f("pk_dataset_join_keys")),
    )


def downgrade() -> None:
    op.drop_table("dataset_join_keys")
