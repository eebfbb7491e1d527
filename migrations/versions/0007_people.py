"""people: human identities, invitations, client owners, people on destroy requests

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-04 21:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = "0004"  # crypto_destroy_requests is created there


def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("totp_key_id", sa.String(length=36), nullable=False),
        sa.Column("totp_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("org_admin", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by_person", sa.String(length=40), nullable=True),
        sa.Column("invited_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organisations.id"], name=op.f("fk_people_org_id_organisations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_people")),
        sa.UniqueConstraint("login", name=op.f("uq_people_login")),
    )
    op.create_index(op.f("ix_people_org_id"), "people", ["org_id"], unique=False)
    op.create_index(
        op.f("ix_people_created_by_person"), "people", ["created_by_person"], unique=False
    )
    op.create_table(
        "person_invitations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("org_admin", sa.Boolean(), nullable=False),
        sa.Column("invited_by_person", sa.String(length=40), nullable=True),
        sa.Column("invited_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("person_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name=op.f("fk_person_invitations_org_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_person_invitations")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_person_invitations_code_hash")),
    )
    op.create_index(
        op.f("ix_person_invitations_org_id"), "person_invitations", ["org_id"], unique=False
    )
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("owner_person_id", sa.String(length=40), nullable=True))
        batch.create_index(batch.f("ix_clients_owner_person_id"), ["owner_person_id"])
        batch.create_foreign_key(
            batch.f("fk_clients_owner_person_id_people"), "people", ["owner_person_id"], ["id"]
        )
    with op.batch_alter_table("crypto_destroy_requests") as batch:
        batch.add_column(sa.Column("requested_by_person", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("requested_by_sponsor", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("decided_by_person", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("crypto_destroy_requests") as batch:
        batch.drop_column("decided_by_person")
        batch.drop_column("requested_by_sponsor")
        batch.drop_column("requested_by_person")
    with op.batch_alter_table("clients") as batch:
        batch.drop_constraint(batch.f("fk_clients_owner_person_id_people"), type_="foreignkey")
        batch.drop_index(batch.f("ix_clients_owner_person_id"))
        batch.drop_column("owner_person_id")
    op.drop_index(op.f("ix_person_invitations_org_id"), table_name="person_invitations")
    op.drop_table("person_invitations")
    op.drop_index(op.f("ix_people_created_by_person"), table_name="people")
    op.drop_index(op.f("ix_people_org_id"), table_name="people")
    op.drop_table("people")
