"""ledger: entries, hash tiles, signed blocks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 15:51:29.961140
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("ledger_index", sa.BigInteger(), nullable=True))
    op.create_table(
        "ledger_blocks",
        sa.Column("height", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("prev_block_hash", sa.LargeBinary(), nullable=False),
        sa.Column("first_index", sa.BigInteger(), nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.LargeBinary(), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("signer_key_id", sa.String(length=128), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("block_hash", sa.LargeBinary(), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("height", name=op.f("pk_ledger_blocks")),
    )
    op.create_index("ix_ledger_blocks_tree_size", "ledger_blocks", ["tree_size"], unique=False)
    op.create_table(
        "ledger_entries",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("leaf", sa.LargeBinary(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_ledger_entries")),
    )
    op.create_index(
        "ix_ledger_entries_object_id", "ledger_entries", ["object_id", "idx"], unique=False
    )
    op.create_index("ix_ledger_entries_type", "ledger_entries", ["type", "idx"], unique=False)
    op.create_table(
        "ledger_sequence",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_sequence")),
    )
    # The sequence row exists from the start, so appenders only ever UPDATE it.
    op.execute("INSERT INTO ledger_sequence (id, size) VALUES (1, 0)")
    op.create_table(
        "ledger_tiles",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hashes", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_ledger_tiles")),
    )


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("ledger_index")
    op.drop_table("ledger_tiles")
    op.drop_table("ledger_sequence")
    op.drop_index("ix_ledger_entries_type", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_object_id", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_index("ix_ledger_blocks_tree_size", table_name="ledger_blocks")
    op.drop_table("ledger_blocks")
