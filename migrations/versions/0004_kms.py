"""kms: key validity and state-change times, data-key algorithm, destroy requests

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-26 16:02:49.047243
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crypto_destroy_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("key_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=512), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crypto_destroy_requests")),
    )
    op.create_index(
        op.f("ix_crypto_destroy_requests_key_id"),
        "crypto_destroy_requests",
        ["key_id"],
        unique=False,
    )
    op.add_column(
        "crypto_data_keys",
        sa.Column("algorithm", sa.String(length=32), server_default="AES-256-GCM", nullable=False),
    )
    op.add_column("crypto_keys", sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
    op.add_column("crypto_keys", sa.Column("not_after", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "crypto_keys", sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(op.f("ix_crypto_keys_owner_org"), "crypto_keys", ["owner_org"], unique=False)
    # Keys made before this revision were active from creation on.
    op.execute(
        "UPDATE crypto_keys SET not_before = created_at, state_changed_at = created_at "
        "WHERE not_before IS NULL"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_crypto_keys_owner_org"), table_name="crypto_keys")
    with op.batch_alter_table("crypto_keys") as batch:
        batch.drop_column("state_changed_at")
        batch.drop_column("not_after")
        batch.drop_column("not_before")
    with op.batch_alter_table("crypto_data_keys") as batch:
        batch.drop_column("algorithm")
    op.drop_index(op.f("ix_crypto_destroy_requests_key_id"), table_name="crypto_destroy_requests")
    op.drop_table("crypto_destroy_requests")
