"""computations: the open round of a federated job under a requester-held key

Revision ID: 0030
Revises: 0005
Create Date: 2026-12-05 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "computation_fl_rounds",
        sa.Column("computation_id", sa.String(length=36), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("aggregate", sa.Text(), nullable=False),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["computation_id"],
            ["computations.id"],
            name=op.f("fk_computation_fl_rounds_computation_id_computations"),
        ),
        sa.PrimaryKeyConstraint("computation_id", name=op.f("pk_computation_fl_rounds")),
    )


def downgrade() -> None:
    op.drop_table("computation_fl_rounds")
