"""person passkeys: WebAuthn credentials and their server-made challenges

Revision ID: 0029
Revises: 0005
Create Date: 2026-12-05 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0005"
branch_labels = None
depends_on = "0007"  # the people table is created there


def upgrade() -> None:
    op.create_table(
        "person_passkeys",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("person_id", sa.String(length=40), nullable=False),
        sa.Column("credential_id", sa.String(length=1400), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("transports", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_person_passkeys_person_id_people")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person_passkeys")),
        sa.UniqueConstraint("credential_id", name=op.f("uq_person_passkeys_credential_id")),
    )
    op.create_index(
        op.f("ix_person_passkeys_person_id"), "person_passkeys", ["person_id"], unique=False
    )
    op.create_table(
        "passkey_challenges",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("person_id", sa.String(length=40), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("challenge_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_passkey_challenges_person_id_people")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_passkey_challenges")),
        sa.UniqueConstraint("challenge_hash", name=op.f("uq_passkey_challenges_challenge_hash")),
    )
    op.create_index(
        op.f("ix_passkey_challenges_person_id"), "passkey_challenges", ["person_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_passkey_challenges_person_id"), table_name="passkey_challenges")
    op.drop_table("passkey_challenges")
    op.drop_index(op.f("ix_person_passkeys_person_id"), table_name="person_passkeys")
    op.drop_table("person_passkeys")
