"""computations: the public half of requester-held job keys

Revision ID: 0022
Revises: 0005
Create Date: 2026-12-04 23:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "computation_job_keys",
        sa.Column("computation_id", sa.String(length=36), nullable=False),
        sa.Column("scheme", sa.String(length=16), nullable=False),
        sa.Column("public_n", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["computation_id"],
            ["computations.id"],
            name=op.f("fk_computation_job_keys_computation_id_computations"),
        ),
        sa.PrimaryKeyConstraint("computation_id", name=op.f("pk_computation_job_keys")),
    )


def downgrade() -> None:
    op.drop_table("computation_job_keys")
