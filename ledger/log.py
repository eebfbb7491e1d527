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

from sqlalchemy.orm import Session

from crypto.lru import Lru
from ledger.blocks import GENESIS_PREV, Block
from ledger.checkpoint import Checkpoint
from ledger.errors import BlockNotFound, EntryNotFound, InvalidRange, LedgerError
from ledger.merkle import (
    TreeBuilder,
    TreeHasher,
    consistency_proof,
    frontier_nodes,
    hasher,
    inclusion_proof,
)
from ledger.note import NoteSigner, sign_note
from ledger.records import LedgerRecord
from ledger.sql_storage import SqlLogStore
from ledger.storage import MAX_INDEX, EntryQuery, LogStore, NewLeaf, SealedBlock, StoredEntry
from ledger.tiles import TILE_HEIGHT, TileCache, Tiles

__all__ = [
    "MAX_PAGE",
    "Ledger",
    "LedgerConfig",
    "LedgerSigner",
    "LogTransaction",
    "SealedBlock",
    "StoredEntry",
]

LogTransaction = Session | LogStore
"""Where a ledger call reads and writes: the caller's SQL session, or any `LogStore`."""

MAX_PAGE = 1000


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


class Ledger:
    """One verifiable log over a `LogStore` (by default the platform database's tables).

    Every method takes the transaction to work in: the caller's SQLAlchemy session
    (wrapped in a `SqlLogStore`) or any `LogStore`, such as a `MemoryLogStorage`
    transaction.
    """

    def __init__(self, config: LedgerConfig, cache: TileCache | None = None) -> None:
        self.config = config
        self.hasher: TreeHasher = hasher(config.hash_name)
        self.cache = cache if cache is not None else TileCache()
        # Committed entries never change (the log only appends): up to ~8 MB of leaves.
        self._committed: Lru[int, StoredEntry] = Lru(8192)
        self._listeners: list[_AppendListener] = []

    @staticmethod
    def store(tx: LogTransaction) -> LogStore:
        """The `LogStore` for `tx`."""
        return SqlLogStore(tx) if isinstance(tx, Session) else tx

    # -- appending ---------------------------------------------------------------------

    def on_append(self, listener: _AppendListener) -> None:
        """Call `listener(count)` after each append (the sealer counts toward a batch)."""
        self._listeners.append(listener)

    def append(self, tx: LogTransaction, record: LedgerRecord) -> int:
        """Add one entry to `tx`'s transaction; returns its index."""
        return self.append_many(tx, [record])

    def append_many(self, tx: LogTransaction, records: Sequence[LedgerRecord]) -> int:
        """Add entries to `tx`'s transaction; returns the first one's index.

        The sequence stays locked until the caller commits, so concurrent
        operations get dense, commit-ordered indexes. Call it last in a transaction.
        """
        if not records:
            raise InvalidRange("nothing to append")
        first = self.store(tx).append_leaves(
            [NewLeaf(r.leaf(), r.type, r.object_id) for r in records]
        )
        for listener in self._listeners:
            listener(len(records))
        return first

    def size(self, tx: LogTransaction) -> int:
        """Entries committed (sealed or not)."""
        return self.store(tx).size()

    # -- sealing -------------------------------------------------------------------------

    def seal(
        self, tx: LogTransaction, signer: LedgerSigner, *, now: datetime
    ) -> SealedBlock | None:
        """Seal committed entries after the last block into a new block.

        Returns None when nothing is pending (a first, empty block is still sealed,
        so a checkpoint always exists). The caller commits; a concurrent sealer that
        got there first makes this one raise `SealRace` (or the backend's integrity
        error), and the caller rolls back and tries again.
        """
        store = self.store(tx)
        sealed = store.latest_block()
        latest = sealed.block if sealed is not None else None
        start = latest.tree_size if latest is not None else 0
        end = min(store.size(), start + self.config.max_block_entries)
        if latest is not None and end == start:
            return None
        tiles = Tiles(store, self.hasher, self.cache)
        builder = self._resume(tiles, start)
        leaves = store.entries(EntryQuery(start, end, limit=max(1, end - start)))
        if len(leaves) != end - start or (leaves and leaves[-1].index != end - 1):
            raise LedgerError("ledger entries have a gap", first=start, end=end)
        leaf_hash = self.hasher.leaf
        level0: list[bytes] = []
        upper: dict[int, tuple[int, list[bytes]]] = {}
        for stored in leaves:
            h = leaf_hash(stored.leaf)
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
        result = SealedBlock(block, note)
        store.add_block(result, block.block_hash(self.hasher.digest))
        return result

    def _resume(self, tiles: Tiles, size: int) -> TreeBuilder:
        """A tree builder positioned after `size` leaves, from O(log n) stored nodes."""
        frontier = [tiles.node(level, index) for level, index in frontier_nodes(size)]
        return TreeBuilder.from_state(self.hasher, size, frontier)

    # -- reading -------------------------------------------------------------------------

    def latest(self, tx: LogTransaction) -> SealedBlock | None:
        return self.store(tx).latest_block()

    def checkpoint(self, tx: LogTransaction) -> str:
        """The newest signed checkpoint (a C2SP signed note)."""
        latest = self.latest(tx)
        if latest is None:
            raise BlockNotFound("the ledger has not sealed a block yet")
        return latest.checkpoint

    def block(self, tx: LogTransaction, height: int) -> SealedBlock:
        found = self.store(tx).block(height) if 0 <= height <= MAX_INDEX else None
        if found is None:
            raise BlockNotFound("no block at this height", height=height)
        return found

    def blocks(self, tx: LogTransaction, start: int, end: int) -> list[SealedBlock]:
        """Blocks with start <= height < end, at most MAX_PAGE."""
        _check_range(start, end)
        if start >= MAX_INDEX:
            return []
        return self.store(tx).blocks(start, min(end, MAX_INDEX), limit=MAX_PAGE)

    def block_for(self, tx: LogTransaction, tree_size: int) -> SealedBlock:
        """The block whose checkpoint has exactly `tree_size` entries."""
        found = self.store(tx).block_with_size(tree_size) if 0 <= tree_size <= MAX_INDEX else None
        if found is None:
            raise BlockNotFound("no checkpoint has this tree size", tree_size=tree_size)
        return found

    def entry(self, tx: LogTransaction, index: int) -> StoredEntry:
        found = (
            self.store(tx).entries(EntryQuery(index, index + 1, limit=1))
            if 0 <= index < MAX_INDEX
            else []
        )
        if not found:
            raise EntryNotFound("no ledger entry at this index", index=index)
        return found[0]

    def committed_entry(self, index: int) -> StoredEntry | None:
        """Entry `index` if an earlier `read_committed` remembered it (no transaction)."""
        return self._committed.get(index)

    def read_committed(self, tx: LogTransaction, index: int) -> StoredEntry:
        """Entry `index`, read in `tx` and remembered for `committed_entry`.

        `tx` must have written nothing, so what it sees is committed. An entry appended
        in an open transaction may still roll back, and its index be reused.
        """
        found = self.entry(tx, index)
        self._committed.put(index, found)
        return found

    def entries(
        self,
        tx: LogTransaction,
        *,
        start: int = 0,
        end: int | None = None,
        type: str | None = None,
        object_id: str | None = None,
        limit: int = MAX_PAGE,
    ) -> list[StoredEntry]:
        """Entries with start <= index < end, optionally filtered, in index order."""
        _check_range(start, end if end is not None else start)
        if start >= MAX_INDEX:
            return []  # beyond any index a backend can store
        return self.store(tx).entries(
            EntryQuery(
                start,
                min(end, MAX_INDEX) if end is not None else None,
                limit=max(1, min(limit, MAX_PAGE)),
                type=type,
                object_id=object_id,
            )
        )

    # -- proofs --------------------------------------------------------------------------

    def sealed_size(self, tx: LogTransaction) -> int:
        return self.store(tx).sealed_size()

    def _check_sealed(self, store: LogStore, tree_size: int) -> None:
        sealed = store.sealed_size()
        if tree_size > sealed:
            raise InvalidRange(
                "tree_size is beyond the newest checkpoint", tree_size=tree_size, sealed=sealed
            )

    def inclusion_proof(self, tx: LogTransaction, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 audit path for `index` in the tree of `tree_size` leaves."""
        if not 0 <= index < tree_size:
            raise InvalidRange("index must satisfy 0 <= index < tree_size")
        store = self.store(tx)
        self._check_sealed(store, tree_size)
        tiles = Tiles(store, self.hasher, self.cache)
        return inclusion_proof(self.hasher, index, tree_size, tiles.node)

    def consistency_proof(self, tx: LogTransaction, first: int, second: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 proof that tree `first` is a prefix of tree `second`."""
        if not 0 <= first <= second:
            raise InvalidRange("sizes must satisfy 0 <= first <= second")
        store = self.store(tx)
        self._check_sealed(store, second)
        tiles = Tiles(store, self.hasher, self.cache)
        return consistency_proof(self.hasher, first, second, tiles.node)


class _AppendListener(Protocol):
    def __call__(self, count: int) -> None: ...


def _check_range(start: int, end: int) -> None:
    if start < 0 or end < start:
        raise InvalidRange("range must satisfy 0 <= start <= end")
