"""Ledger tables: entries (leaf bytes), hash tiles (interior nodes), sealed blocks.

Layout follows the tiled transparency logs (C2SP tlog-tiles): the hashes at tree
levels 0, 8, 16, ... are stored 256 to a row, so any node needed for a proof is
one row read plus at most 255 hashes away, and a proof costs O(log n) reads.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, LargeBinary, MetaData, SmallInteger, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class LedgerBase(DeclarativeBase):
    """Declarative base for the tables `ledger` owns."""

    # Only primary keys and indexes exist here; both are named explicitly or by this.
    metadata = MetaData(naming_convention={"pk": "pk_%(table_name)s"})
    # The ledger's integers are indexes, sizes and times (64-bit); its bytes are leaves,
    # hashes and signatures. Other widths and string lengths are spelled at the column.
    type_annotation_map = {int: BigInteger, bytes: LargeBinary}


class LedgerSequence(LedgerBase):
    """The one row that hands out entry indexes: `size` is the next index.

    Appenders increment it inside their own transaction, so indexes are dense:
    a rolled-back operation returns its index with everything else it wrote.
    """

    __tablename__ = "ledger_sequence"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    size: Mapped[int]


class LedgerEntry(LedgerBase):
    """One leaf: the exact canonical-JSON bytes, plus two columns for lookups."""

    __tablename__ = "ledger_entries"

    idx: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    leaf: Mapped[bytes]
    type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (
        Index("ix_ledger_entries_type", "type", "idx"),
        Index("ix_ledger_entries_object_id", "object_id", "idx"),
    )


class LedgerTile(LedgerBase):
    """Up to 256 consecutive hashes of tree level `8 * level`, starting at `256 * idx`."""

    __tablename__ = "ledger_tiles"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    hashes: Mapped[bytes]


class LedgerBlock(LedgerBase):
    """A sealed batch: signed block header plus the signed-note checkpoint for it."""

    __tablename__ = "ledger_blocks"

    height: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    prev_block_hash: Mapped[bytes]
    first_index: Mapped[int]
    tree_size: Mapped[int]
    root: Mapped[bytes]
    time_ms: Mapped[int]  # Unix ms, UTC: what the block signs
    signer_key_id: Mapped[str] = mapped_column(String(128))
    signature: Mapped[bytes]
    block_hash: Mapped[bytes]
    checkpoint: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_ledger_blocks_tree_size", "tree_size"),)
