"""The ledger's storage interface: what the log needs from a backend, one transaction at a time.

After Trillian's `LogStorage` (a read-write transaction over one tree) and Flower's
`LinkState`: `Ledger` speaks only to a `LogStore`, a view of the log inside one
transaction of its backend. The backends are `SqlLogStore` (SQLite and PostgreSQL,
wrapping the caller's SQLAlchemy session, so an operation and its entry commit
together) and `MemoryLogStorage` (in-process, for tests and tools); one suite in
`tests/test_ledger_storage.py` runs on each.

A backend's transactions must behave like READ COMMITTED with row locks, as the SQL
tables do: `append_leaves` holds the sequence until commit (dense, commit-ordered
indexes); `write_tile` and `add_block` are compare-and-set, so a sealer whose view
went stale loses with `SealRace` (and retries) instead of overwriting a newer tile.

Later stores (witness cosignatures, chain anchors) are separate protocols a backend
may also implement, so this one does not change when they arrive.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from ledger.blocks import Block

__all__ = [
    "MAX_INDEX",
    "LogStore",
    "NewLeaf",
    "SealedBlock",
    "StoredEntry",
]

# Indexes, heights and tree sizes are stored as signed 64-bit integers (SQL BIGINT);
# a larger number names nothing stored, and must not reach the database driver.
MAX_INDEX: Final = 2**63 - 1


@dataclass(frozen=True)
class NewLeaf:
    """One entry to append: the leaf bytes, plus the two columns lookups filter on."""

    leaf: bytes
    type: str
    object_id: str | None


@dataclass(frozen=True)
class EntryQuery:
    """Up to `limit` entries with start <= index < end (None: to the last), filtered."""

    start: int
    end: int | None
    limit: int
    type: str | None = None
    object_id: str | None = None


@dataclass(frozen=True)
class StoredEntry:
    """One stored entry: its index and the exact leaf bytes that were hashed."""

    index: int
    leaf: bytes


@dataclass(frozen=True)
class SealedBlock:
    """A signed block header and the signed-note checkpoint sealed with it."""

    block: Block
    checkpoint: str


class LogStore(Protocol):
    """The log's storage inside one transaction: leaves, hash tiles, blocks, checkpoints.

    Reads see everything committed plus this transaction's own writes. Arguments
    are already checked by `Ledger` (0 <= start <= end <= MAX_INDEX and the like).
    """

    # -- leaves ---------------------------------------------------------------------------

    def append_leaves(self, leaves: Sequence[NewLeaf]) -> int:
        """Store `leaves` at the next dense indexes; returns the first one's index.

        The sequence stays held until this transaction ends, so concurrent appenders
        get dense, commit-ordered indexes and a rollback returns its indexes.
        """
        ...

    def size(self) -> int:
        """Entries appended (sealed or not) as this transaction sees them."""
        ...

    def entries(self, query: EntryQuery) -> list[StoredEntry]:
        """The entries `query` asks for, in index order."""
        ...

    # -- hash tiles -----------------------------------------------------------------------

    def read_tile(self, level: int, idx: int) -> bytes:
        """The stored bytes of tile (level, idx); empty if it does not exist yet."""
        ...

    def write_tile(self, level: int, idx: int, hashes: bytes, *, stored: int) -> None:
        """Replace tile (level, idx), which must hold exactly `stored` bytes, by `hashes`.

        `stored` = 0 creates the tile. Raises `TileRace` when the tile holds any other
        length (another sealer extended it), possibly only when the transaction ends.
        """
        ...

    def tiles(self) -> Iterator[tuple[int, int, bytes]]:
        """Every stored tile as (level, idx, hashes), ordered by level then idx."""
        ...

    # -- blocks and checkpoints -----------------------------------------------------------

    def add_block(self, sealed: SealedBlock, block_hash: bytes) -> None:
        """Store a new block; `BlockConflict` if its height exists (maybe at commit)."""
        ...

    def latest_block(self) -> SealedBlock | None:
        """The block of greatest height, if any."""
        ...

    def block(self, height: int) -> SealedBlock | None:
        """The block at `height`, if sealed."""
        ...

    def blocks(self, start: int, end: int, *, limit: int) -> list[SealedBlock]:
        """Up to `limit` blocks with start <= height < end, in height order."""
        ...

    def block_with_size(self, tree_size: int) -> SealedBlock | None:
        """The block whose checkpoint covers exactly `tree_size` entries, if any."""
        ...

    def sealed_size(self) -> int:
        """The tree size of the newest block (0 before the first)."""
        ...
