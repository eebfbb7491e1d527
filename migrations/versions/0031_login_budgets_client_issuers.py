"""login failure budgets shared by every gateway process; who last set a client's secret

`login_failure_budgets`: exchange/login_budgets.py. `clients.secret_issued_by`: the
person who issued or last rotated the secret (the two-person rule, policies/sod.rego).

Revision ID: 0031
Revises: 0005
Create Date: 2026-12-05 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_failure_budgets",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("level", sa.Float(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_failure_budgets")),
    )
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("secret_issued_by", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("secret_issued_by")
    op.drop_table("login_failure_budgets")
