"""ledger: witness cosignatures of checkpoints

Revision ID: 0014
Revises: 0005
Create Date: 2026-12-04 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_cosignatures",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("witness", sa.String(length=255), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("cosigned_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size", "witness", name=op.f("pk_ledger_cosignatures")),
    )


def downgrade() -> None:
    op.drop_table("ledger_cosignatures")
