"""auth sessions: refresh-token families and revoked access tokens

Revision ID: 0006
Revises: 0002
Create Date: 2026-11-26 16:07:43.308914
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_revoked_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_auth_revoked_tokens")),
    )
    op.create_index(
        op.f("ix_auth_revoked_tokens_expires_at"),
        "auth_revoked_tokens",
        ["expires_at"],
        unique=False,
    )
    op.create_table(
        "auth_token_families",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=64), nullable=True),
        sa.Column("cnf_x5t", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_auth_token_families_client_id_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_token_families")),
    )
    op.create_index(
        op.f("ix_auth_token_families_client_id"), "auth_token_families", ["client_id"], unique=False
    )
    op.create_table(
        "auth_refresh_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("family_id", sa.String(length=36), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["auth_token_families.id"],
            name=op.f("fk_auth_refresh_tokens_family_id_auth_token_families"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_auth_refresh_tokens")),
    )
    op.create_index(
        op.f("ix_auth_refresh_tokens_family_id"), "auth_refresh_tokens", ["family_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_auth_refresh_tokens_family_id"), table_name="auth_refresh_tokens")
    op.drop_table("auth_refresh_tokens")
    op.drop_index(op.f("ix_auth_token_families_client_id"), table_name="auth_token_families")
    op.drop_table("auth_token_families")
    op.drop_index(op.f("ix_auth_revoked_tokens_expires_at"), table_name="auth_revoked_tokens")
    op.drop_table("auth_revoked_tokens")
