"""The SQL `LogStore` (SQLite and PostgreSQL): the ledger tables, through the caller's session."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger.blocks import Block
from ledger.errors import BlockConflict, TileRace
from ledger.models import LedgerBlock, LedgerEntry, LedgerSequence, LedgerTile
from ledger.storage import EntryQuery, NewLeaf, SealedBlock, StoredEntry

__all__ = ["SqlLogStore"]

_READ_TILE = select(LedgerTile.hashes).where(
    LedgerTile.level == bindparam("level"), LedgerTile.idx == bindparam("idx")
)


class SqlLogStore:
    """A `LogStore` over one SQLAlchemy session; the caller begins and commits."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def session(self) -> Session:
        return self._session

    # -- leaves ---------------------------------------------------------------------------

    def append_leaves(self, leaves: Sequence[NewLeaf]) -> int:
        count = len(leaves)
        # The UPDATE locks the sequence row until the caller's transaction ends.
        end = self._session.execute(
            update(LedgerSequence)
            .where(LedgerSequence.id == 1)
            .values(size=LedgerSequence.size + count)
            .returning(LedgerSequence.size)
        ).scalar_one()
        first: int = end - count
        rows = [
            {"idx": first + i, "leaf": new.leaf, "type": new.type, "object_id": new.object_id}
            for i, new in enumerate(leaves)
        ]
        self._session.execute(insert(LedgerEntry), rows)
        return first

    def size(self) -> int:
        size: int = self._session.execute(
            select(LedgerSequence.size).where(LedgerSequence.id == 1)
        ).scalar_one()
        return size

    def entries(self, query: EntryQuery) -> list[StoredEntry]:
        rows_of = select(LedgerEntry.idx, LedgerEntry.leaf).where(LedgerEntry.idx >= query.start)
        if query.end is not None:
            rows_of = rows_of.where(LedgerEntry.idx < query.end)
        if query.type is not None:
            rows_of = rows_of.where(LedgerEntry.type == query.type)
        if query.object_id is not None:
            rows_of = rows_of.where(LedgerEntry.object_id == query.object_id)
        rows = self._session.execute(rows_of.order_by(LedgerEntry.idx).limit(query.limit)).all()
        return [StoredEntry(i, bytes(leaf)) for i, leaf in rows]

    # -- hash tiles -----------------------------------------------------------------------

    def read_tile(self, level: int, idx: int) -> bytes:
        stored = self._session.execute(
            _READ_TILE, {"level": level, "idx": idx}
        ).scalar_one_or_none()
        return bytes(stored) if stored is not None else b""

    def write_tile(self, level: int, idx: int, hashes: bytes, *, stored: int) -> None:
        if stored == 0:
            try:
                self._session.execute(
                    insert(LedgerTile).values(level=level, idx=idx, hashes=hashes)
                )
            except IntegrityError as exc:
                raise TileRace("tile was created concurrently", level=level, index=idx) from exc
            return
        # Compare-and-set on the stored length: on PostgreSQL a concurrent sealer's
        # UPDATE waits for our row lock, then finds the length changed and matches nothing.
        result = self._session.execute(
            update(LedgerTile)
            .where(
                LedgerTile.level == level,
                LedgerTile.idx == idx,
                func.length(LedgerTile.hashes) == stored,
            )
            .values(hashes=hashes)
        )
        if result.rowcount != 1:
            raise TileRace(
                "stored tile does not end where the new hashes start", level=level, index=idx
            )

    def tiles(self) -> Iterator[tuple[int, int, bytes]]:
        rows = self._session.execute(
            select(LedgerTile.level, LedgerTile.idx, LedgerTile.hashes).order_by(
                LedgerTile.level, LedgerTile.idx
            )
        )
        for level, idx, hashes in rows:
            yield level, idx, bytes(hashes)

    # -- blocks and checkpoints -----------------------------------------------------------

    def add_block(self, sealed: SealedBlock, block_hash: bytes) -> None:
        block = sealed.block
        self._session.add(
            LedgerBlock(
                height=block.height,
                prev_block_hash=block.prev_block_hash,
                first_index=block.first_index,
                tree_size=block.tree_size,
                root=block.root,
                time_ms=block.time_ms,
                signer_key_id=block.signer_key_id,
                signature=block.signature,
                block_hash=block_hash,
                checkpoint=sealed.checkpoint,
            )
        )
        try:
            self._session.flush()
        except IntegrityError as exc:
            raise BlockConflict("block height already sealed", height=block.height) from exc

    def latest_block(self) -> SealedBlock | None:
        row = self._session.execute(
            select(LedgerBlock).order_by(LedgerBlock.height.desc()).limit(1)
        ).scalar_one_or_none()
        return _sealed(row) if row is not None else None

    def block(self, height: int) -> SealedBlock | None:
        row = self._session.get(LedgerBlock, height)
        return _sealed(row) if row is not None else None

    def blocks(self, start: int, end: int, *, limit: int) -> list[SealedBlock]:
        rows = self._session.scalars(
            select(LedgerBlock)
            .where(LedgerBlock.height >= start, LedgerBlock.height < end)
            .order_by(LedgerBlock.height)
            .limit(limit)
        ).all()
        return [_sealed(r) for r in rows]

    def block_with_size(self, tree_size: int) -> SealedBlock | None:
        row = self._session.execute(
            select(LedgerBlock).where(LedgerBlock.tree_size == tree_size).limit(1)
        ).scalar_one_or_none()
        return _sealed(row) if row is not None else None

    def sealed_size(self) -> int:
        size = self._session.execute(select(func.max(LedgerBlock.tree_size))).scalar_one_or_none()
        return int(size or 0)


def _sealed(row: LedgerBlock) -> SealedBlock:
    block = Block(
        height=row.height,
        prev_block_hash=bytes(row.prev_block_hash),
        first_index=row.first_index,
        tree_size=row.tree_size,
        root=bytes(row.root),
        time_ms=row.time_ms,
        signer_key_id=row.signer_key_id,
        signature=bytes(row.signature),
    )
    return SealedBlock(block, row.checkpoint)
