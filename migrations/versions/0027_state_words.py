"""exchange: one spelling for states (snake_case): `awaiting-approval` becomes `awaiting_approval`

Revision ID: 0027
Revises: 0005
Create Date: 2026-12-05 00:10:00

Data only (issue 12, API consistency): every state the API shows is snake_case, like
the ledger's record types. Transitions already in a computation's JSON history keep the
old spelling and are normalised when shown (exchange.computations.schemas.to_public).
"""

from __future__ import annotations

from alembic import op

revision = "0027"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE computations SET state = 'awaiting_approval' WHERE state = 'awaiting-approval'"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE computations SET state = 'awaiting-approval' WHERE state = 'awaiting_approval'"
    )
