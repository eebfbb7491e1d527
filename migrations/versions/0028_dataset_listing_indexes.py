"""exchange: indexes for the dataset listing (visibility groups, pages in registration order)

Revision ID: 0028
Revises: 0005
Create Date: 2026-12-05 03:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0028"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_datasets_visibility", "datasets", ["owner_org", "level", "open_attribute", "pi"]
    )
    op.create_index("ix_datasets_registered", "datasets", ["registered_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_datasets_registered", table_name="datasets")
    op.drop_index("ix_datasets_visibility", table_name="datasets")
