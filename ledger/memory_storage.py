"""The in-memory `LogStore`: the SQL tables' transaction semantics, in one process."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ledger.errors import BlockConflict, TileRace
from ledger.storage import EntryQuery, NewLeaf, SealedBlock, StoredEntry

__all__ = ["MemoryLogStorage", "MemoryLogStore"]


class MemoryLogStorage:
    """One log held in memory; `transaction()` opens a `MemoryLogStore` on it.

    Like the SQL tables under READ COMMITTED: reads see what has committed; an
    appender holds the sequence until its transaction ends (the row lock); tile
    writes and blocks are checked when written and again at commit, so a stale
    sealer fails with `SealRace` instead of overwriting a newer tile.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the committed state below
        self._sequence = threading.Lock()  # held by an appending transaction
        self._entries: list[tuple[bytes, str, str | None]] = []
        self._tiles: dict[tuple[int, int], bytes] = {}
        self._blocks: dict[int, tuple[SealedBlock, bytes]] = {}

    @contextmanager
    def transaction(self) -> Iterator[MemoryLogStore]:
        """A transaction: committed when the block ends, discarded if it raises."""
        tx = MemoryLogStore(self)
        try:
            yield tx
            tx._commit()
        finally:
            tx._release()


class MemoryLogStore:
    """A `LogStore` for one transaction on a `MemoryLogStorage`."""

    def __init__(self, storage: MemoryLogStorage) -> None:
        self._storage = storage
        self._holds_sequence = False
        self._appended: list[tuple[bytes, str, str | None]] = []
        self._tiles: dict[tuple[int, int], tuple[int, bytes]] = {}  # key -> (base length, new)
        self._blocks: dict[int, tuple[SealedBlock, bytes]] = {}
        self._done = False

    def _live(self) -> MemoryLogStorage:
        if self._done:
            raise RuntimeError("the transaction has ended")
        return self._storage

    def _commit(self) -> None:
        storage = self._live()
        with storage._lock:
            for (level, idx), (base, _) in self._tiles.items():
                if len(storage._tiles.get((level, idx), b"")) != base:
                    raise TileRace(
                        "stored tile does not end where the new hashes start",
                        level=level,
                        index=idx,
                    )
            for height in self._blocks:
                if height in storage._blocks:
                    raise BlockConflict("block height already sealed", height=height)
            storage._entries.extend(self._appended)
            storage._tiles.update({key: data for key, (_, data) in self._tiles.items()})
            storage._blocks.update(self._blocks)

    def _release(self) -> None:
        if self._holds_sequence:
            self._holds_sequence = False
            self._storage._sequence.release()
        self._done = True

    # -- leaves ---------------------------------------------------------------------------

    def append_leaves(self, leaves: Sequence[NewLeaf]) -> int:
        storage = self._live()
        if not self._holds_sequence:
            storage._sequence.acquire()
            self._holds_sequence = True
        first = len(storage._entries) + len(self._appended)
        self._appended.extend((new.leaf, new.type, new.object_id) for new in leaves)
        return first

    def size(self) -> int:
        return len(self._live()._entries) + len(self._appended)

    def entries(self, query: EntryQuery) -> list[StoredEntry]:
        storage = self._live()
        with storage._lock:
            committed = storage._entries
            total = len(committed) + len(self._appended)
            stop = total if query.end is None else min(query.end, total)
            found: list[StoredEntry] = []
            for index in range(query.start, stop):
                if index < len(committed):
                    leaf, leaf_type, leaf_object = committed[index]
                else:
                    leaf, leaf_type, leaf_object = self._appended[index - len(committed)]
                if query.type is not None and leaf_type != query.type:
                    continue
                if query.object_id is not None and leaf_object != query.object_id:
                    continue
                found.append(StoredEntry(index, leaf))
                if len(found) == query.limit:
                    break
        return found

    # -- hash tiles -----------------------------------------------------------------------

    def read_tile(self, level: int, idx: int) -> bytes:
        own = self._tiles.get((level, idx))
        if own is not None:
            return own[1]
        storage = self._live()
        with storage._lock:
            return storage._tiles.get((level, idx), b"")

    def write_tile(self, level: int, idx: int, hashes: bytes, *, stored: int) -> None:
        key = (level, idx)
        if len(self.read_tile(level, idx)) != stored:
            raise TileRace(
                "stored tile does not end where the new hashes start", level=level, index=idx
            )
        own = self._tiles.get(key)
        self._tiles[key] = (own[0] if own is not None else stored, bytes(hashes))

    def tiles(self) -> Iterator[tuple[int, int, bytes]]:
        storage = self._live()
        with storage._lock:
            merged = dict(storage._tiles)
        merged.update({key: data for key, (_, data) in self._tiles.items()})
        for (level, idx), data in sorted(merged.items()):
            yield level, idx, data

    # -- blocks and checkpoints -----------------------------------------------------------

    def _all_blocks(self) -> dict[int, tuple[SealedBlock, bytes]]:
        storage = self._live()
        with storage._lock:
            merged = dict(storage._blocks)
        merged.update(self._blocks)
        return merged

    def add_block(self, sealed: SealedBlock, block_hash: bytes) -> None:
        height = sealed.block.height
        if height in self._all_blocks():
            raise BlockConflict("block height already sealed", height=height)
        self._blocks[height] = (sealed, block_hash)

    def latest_block(self) -> SealedBlock | None:
        blocks = self._all_blocks()
        return blocks[max(blocks)][0] if blocks else None

    def block(self, height: int) -> SealedBlock | None:
        found = self._all_blocks().get(height)
        return found[0] if found is not None else None

    def blocks(self, start: int, end: int, *, limit: int) -> list[SealedBlock]:
        blocks = self._all_blocks()
        heights = sorted(h for h in blocks if start <= h < end)[:limit]
        return [blocks[h][0] for h in heights]

    def block_with_size(self, tree_size: int) -> SealedBlock | None:
        blocks = self._all_blocks()
        for height in sorted(blocks):
            if blocks[height][0].block.tree_size == tree_size:
                return blocks[height][0]
        return None

    def sealed_size(self) -> int:
        latest = self.latest_block()
        return latest.block.tree_size if latest is not None else 0
