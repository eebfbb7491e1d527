"""The ledger: append in the caller's transaction, seal into signed blocks, prove.

Appends take dense indexes from `ledger_sequence` inside the operation's own
transaction, so an operation and its entry commit together or not at all. Sealing
(a separate transaction) hashes what has committed since the last block, extends
the tiles, and writes one signed block with its checkpoint. A crash at any point
leaves the last committed block, and everything before it, verifiable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from ledger.blocks import GENESIS_PREV, Block
from ledger.checkpoint import Checkpoint
from ledger.errors import LedgerError
from ledger.merkle import (
    TreeBuilder,
    TreeHasher,
    consistency_proof,
    frontier_nodes,
    hasher,
    inclusion_proof,
)
from ledger.models import LedgerBlock, LedgerEntry, LedgerSequence
from ledger.note import NoteSigner, sign_note
from ledger.records import LedgerRecord
from ledger.tiles import TILE_HEIGHT, TileCache, Tiles

MAX_PAGE = 1000


class EntryNotFound(LedgerError):
    code = "ledger-entry-not-found"
    title = "Ledger entry not found"


class BlockNotFound(LedgerError):
    code = "ledger-block-not-found"
    title = "Ledger block not found"


class InvalidRange(LedgerError):
    code = "ledger-invalid-range"
    title = "Invalid ledger range"


class LedgerSigner(Protocol):
    """Signs blocks and checkpoints with one key."""

    @property
    def key_id(self) -> str:
        """Written into each block as `signer_key_id`."""
        ...

    @property
    def note_signer(self) -> NoteSigner:
        """Signs checkpoints as C2SP signed notes."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Signature over a block header."""
        ...


@dataclass(frozen=True)
class LedgerConfig:
    """Deployment settings: the log's origin line, hash, and when to seal."""

    origin: str
    hash_name: str = "sha256"
    seal_interval_s: float = 0.2
    seal_max_entries: int = 1000
    max_block_entries: int = 100_000


@dataclass(frozen=True)
class SealedBlock:
    block: Block
    checkpoint: str


@dataclass(frozen=True)
class StoredEntry:
    index: int
    leaf: bytes


class Ledger:
    """One verifiable log in the platform database."""

    def __init__(self, config: LedgerConfig, cache: TileCache | None = None) -> None:
        self.config = config
        self.hasher: TreeHasher = hasher(config.hash_name)
        self.cache = cache if cache is not None else TileCache()
        self._listeners: list[_AppendListener] = []

    # -- appending ---------------------------------------------------------------------

    def on_append(self, listener: _AppendListener) -> None:
        """Call `listener(count)` after each append (the sealer counts toward a batch)."""
        self._listeners.append(listener)

    def append(self, session: Session, record: LedgerRecord) -> int:
        """Add one entry to `session`'s transaction; returns its index."""
        return self.append_many(session, [record])

    def append_many(self, session: Session, records: Sequence[LedgerRecord]) -> int:
        """Add entries to `session`'s transaction; returns the first one's index.

        The sequence row stays locked until the caller commits, so concurrent
        operations get dense, commit-ordered indexes. Call it last in a transaction.
        """
        if not records:
            raise InvalidRange("nothing to append")
        count = len(records)
        end = session.execute(
            update(LedgerSequence)
            .where(LedgerSequence.id == 1)
            .values(size=LedgerSequence.size + count)
            .returning(LedgerSequence.size)
        ).scalar_one()
        first = end - count
        rows = [
            {"idx": first + i, "leaf": r.leaf(), "type": r.type, "object_id": r.object_id}
            for i, r in enumerate(records)
        ]
        session.execute(insert(LedgerEntry), rows)
        for listener in self._listeners:
            listener(count)
        return first

    def size(self, session: Session) -> int:
        """Entries committed (sealed or not)."""
        return session.execute(
            select(LedgerSequence.size).where(LedgerSequence.id == 1)
        ).scalar_one()

    # -- sealing -------------------------------------------------------------------------

    def seal(self, session: Session, signer: LedgerSigner, *, now: datetime) -> SealedBlock | None:
        """Seal committed entries after the last block into a new block.

        Returns None when nothing is pending (a first, empty block is still sealed,
        so a checkpoint always exists). The caller commits; a concurrent sealer that
        wins the race makes this one fail on the block's primary key, harmlessly.
        """
        latest = self._latest(session)
        start = latest.tree_size if latest is not None else 0
        end = min(self.size(session), start + self.config.max_block_entries)
        if latest is not None and end == start:
            return None
        tiles = Tiles(session, self.hasher, self.cache)
        builder = self._resume(tiles, start)
        leaves = session.execute(
            select(LedgerEntry.idx, LedgerEntry.leaf)
            .where(LedgerEntry.idx >= start, LedgerEntry.idx < end)
            .order_by(LedgerEntry.idx)
        ).all()
        if len(leaves) != end - start or (leaves and leaves[-1][0] != end - 1):
            raise LedgerError("ledger entries have a gap", first=start, end=end)
        leaf_hash = self.hasher.leaf
        level0: list[bytes] = []
        upper: dict[int, tuple[int, list[bytes]]] = {}
        for _, leaf in leaves:
            h = leaf_hash(bytes(leaf))
            level0.append(h)
            for level, index, node in builder.append(h):
                if level % TILE_HEIGHT == 0:
                    upper.setdefault(level, (index, []))[1].append(node)
        tiles.extend(0, start, level0)
        for level, (first_index, nodes) in sorted(upper.items()):
            tiles.extend(level, first_index, nodes)
        root = builder.root()
        now_ms = int(now.timestamp() * 1000)
        block = Block(
            height=latest.height + 1 if latest is not None else 0,
            prev_block_hash=(
                latest.block_hash(self.hasher.digest) if latest is not None else GENESIS_PREV
            ),
            first_index=start,
            tree_size=end,
            root=root,
            time_ms=max(now_ms, latest.time_ms if latest is not None else 0),
            signer_key_id=signer.key_id,
        )
        block = Block(**{**block.__dict__, "signature": signer.sign(block.signed_bytes())})
        note = sign_note(
            Checkpoint(self.config.origin, end, root).body(), signer.note_signer
        ).decode("utf-8")
        session.add(
            LedgerBlock(
                height=block.height,
                prev_block_hash=block.prev_block_hash,
                first_index=block.first_index,
                tree_size=block.tree_size,
                root=block.root,
                time_ms=block.time_ms,
                signer_key_id=block.signer_key_id,
                signature=block.signature,
                block_hash=block.block_hash(self.hasher.digest),
                checkpoint=note,
            )
        )
        session.flush()
        return SealedBlock(block, note)

    def _resume(self, tiles: Tiles, size: int) -> TreeBuilder:
        """A tree builder positioned after `size` leaves, from O(log n) stored nodes."""
        frontier = [tiles.node(level, index) for level, index in frontier_nodes(size)]
        return TreeBuilder.from_state(self.hasher, size, frontier)

    # -- reading -------------------------------------------------------------------------

    def _latest(self, session: Session) -> Block | None:
        row = session.execute(
            select(LedgerBlock).order_by(LedgerBlock.height.desc()).limit(1)
        ).scalar_one_or_none()
        return _block(row) if row is not None else None

    def latest(self, session: Session) -> SealedBlock | None:
        row = session.execute(
            select(LedgerBlock).order_by(LedgerBlock.height.desc()).limit(1)
        ).scalar_one_or_none()
        return SealedBlock(_block(row), row.checkpoint) if row is not None else None

    def checkpoint(self, session: Session) -> str:
        """The newest signed checkpoint (a C2SP signed note)."""
        latest = self.latest(session)
        if latest is None:
            raise BlockNotFound("the ledger has not sealed a block yet")
        return latest.checkpoint

    def block(self, session: Session, height: int) -> SealedBlock:
        row = session.get(LedgerBlock, height)
        if row is None:
            raise BlockNotFound("no block at this height", height=height)
        return SealedBlock(_block(row), row.checkpoint)

    def blocks(self, session: Session, start: int, end: int) -> list[SealedBlock]:
        """Blocks with start <= height < end, at most MAX_PAGE."""
        _check_range(start, end)
        rows = session.scalars(
            select(LedgerBlock)
            .where(LedgerBlock.height >= start, LedgerBlock.height < end)
            .order_by(LedgerBlock.height)
            .limit(MAX_PAGE)
        ).all()
        return [SealedBlock(_block(r), r.checkpoint) for r in rows]

    def block_for(self, session: Session, tree_size: int) -> SealedBlock:
        """The block whose checkpoint has exactly `tree_size` entries."""
        row = session.execute(
            select(LedgerBlock).where(LedgerBlock.tree_size == tree_size).limit(1)
        ).scalar_one_or_none()
        if row is None:
            raise BlockNotFound("no checkpoint has this tree size", tree_size=tree_size)
        return SealedBlock(_block(row), row.checkpoint)

    def entry(self, session: Session, index: int) -> StoredEntry:
        leaf = session.execute(
            select(LedgerEntry.leaf).where(LedgerEntry.idx == index)
        ).scalar_one_or_none()
        if leaf is None:
            raise EntryNotFound("no ledger entry at this index", index=index)
        return StoredEntry(index, bytes(leaf))

    def entries(
        self,
        session: Session,
        *,
        start: int = 0,
        end: int | None = None,
        type: str | None = None,
        object_id: str | None = None,
        limit: int = MAX_PAGE,
    ) -> list[StoredEntry]:
        """Entries with start <= index < end, optionally filtered, in index order."""
        _check_range(start, end if end is not None else start)
        query = select(LedgerEntry.idx, LedgerEntry.leaf).where(LedgerEntry.idx >= start)
        if end is not None:
            query = query.where(LedgerEntry.idx < end)
        if type is not None:
            query = query.where(LedgerEntry.type == type)
        if object_id is not None:
            query = query.where(LedgerEntry.object_id == object_id)
        rows = session.execute(
            query.order_by(LedgerEntry.idx).limit(max(1, min(limit, MAX_PAGE)))
        ).all()
        return [StoredEntry(i, bytes(leaf)) for i, leaf in rows]

    # -- proofs --------------------------------------------------------------------------

    def sealed_size(self, session: Session) -> int:
        size = session.execute(select(func.max(LedgerBlock.tree_size))).scalar_one_or_none()
        return int(size or 0)

    def _check_sealed(self, session: Session, tree_size: int) -> None:
        sealed = self.sealed_size(session)
        if tree_size > sealed:
            raise InvalidRange(
                "tree_size is beyond the newest checkpoint", tree_size=tree_size, sealed=sealed
            )

    def inclusion_proof(self, session: Session, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 audit path for `index` in the tree of `tree_size` leaves."""
        if not 0 <= index < tree_size:
            raise InvalidRange("index must satisfy 0 <= index < tree_size")
        self._check_sealed(session, tree_size)
        tiles = Tiles(session, self.hasher, self.cache)
        return inclusion_proof(self.hasher, index, tree_size, tiles.node)

    def consistency_proof(self, session: Session, first: int, second: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 proof that tree `first` is a prefix of tree `second`."""
        if not 0 <= first <= second:
            raise InvalidRange("sizes must satisfy 0 <= first <= second")
        self._check_sealed(session, second)
        tiles = Tiles(session, self.hasher, self.cache)
        return consistency_proof(self.hasher, first, second, tiles.node)


class _AppendListener(Protocol):
    def __call__(self, count: int) -> None: ...


def _check_range(start: int, end: int) -> None:
    if start < 0 or end < start:
        raise InvalidRange("range must satisfy 0 <= start <= end")


def _block(row: LedgerBlock) -> Block:
    return Block(
        height=row.height,
        prev_block_hash=bytes(row.prev_block_hash),
        first_index=row.first_index,
        tree_size=row.tree_size,
        root=bytes(row.root),
        time_ms=row.time_ms,
        signer_key_id=row.signer_key_id,
        signature=bytes(row.signature),
    )
