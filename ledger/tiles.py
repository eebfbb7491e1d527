"""Hash tiles: the stored interior of the Merkle tree.

Tile (L, N) holds up to 256 consecutive node hashes of tree level 8L, starting at
node 256N. Any perfect subtree hash is then one tile read plus at most 255 hashes
(levels between stored ones are recomputed), so a proof reads O(log n) rows.
Full tiles never change and are cached; the right-edge tile grows as blocks seal.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from ledger.errors import LedgerError
from ledger.merkle import TreeHasher
from ledger.models import LedgerTile

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT


class MissingNode(LedgerError):
    code = "ledger-node-missing"
    title = "Ledger node not stored"


class TileCache:
    """A bounded, thread-safe LRU of full (immutable) tiles."""

    def __init__(self, max_tiles: int = 4096) -> None:
        self._max = max_tiles
        self._tiles: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int]) -> bytes | None:
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            return tile

    def put(self, key: tuple[int, int], tile: bytes) -> None:
        with self._lock:
            self._tiles[key] = tile
            self._tiles.move_to_end(key)
            while len(self._tiles) > self._max:
                self._tiles.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._tiles.clear()


class Tiles:
    """Node reads and tile writes inside one session (one transaction)."""

    def __init__(self, session: Session, hasher: TreeHasher, cache: TileCache) -> None:
        self._session = session
        self._hasher = hasher
        self._cache = cache
        self._full = TILE_WIDTH * hasher.size

    def tile(self, level: int, idx: int) -> bytes:
        """The stored bytes of tile (level, idx); empty if the tile does not exist yet."""
        cached = self._cache.get((level, idx))
        if cached is not None:
            return cached
        stored = self._session.execute(
            select(LedgerTile.hashes).where(LedgerTile.level == level, LedgerTile.idx == idx)
        ).scalar_one_or_none()
        data = bytes(stored) if stored is not None else b""
        if len(data) == self._full:
            self._cache.put((level, idx), data)
        return data

    def node(self, level: int, index: int) -> bytes:
        """Hash of the perfect subtree at (level, index): a `merkle.NodeReader`."""
        size = self._hasher.size
        tile_level, below = divmod(level, TILE_HEIGHT)
        count = 1 << below
        first = index << below
        tile = self.tile(tile_level, first // TILE_WIDTH)
        offset = (first % TILE_WIDTH) * size
        if len(tile) < offset + count * size:
            raise MissingNode("node not sealed yet", level=level, index=index)
        hashes = [tile[offset + i * size : offset + (i + 1) * size] for i in range(count)]
        node = self._hasher.node
        while len(hashes) > 1:
            hashes = [node(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    def extend(self, level: int, start: int, hashes: Iterable[bytes]) -> None:
        """Append consecutive hashes of tree level `level` (a multiple of 8) from `start`."""
        tile_level = level // TILE_HEIGHT
        pending = list(hashes)
        position = start
        while pending:
            idx, offset = divmod(position, TILE_WIDTH)
            take = pending[: TILE_WIDTH - offset]
            pending = pending[len(take) :]
            existing = self.tile(tile_level, idx) if offset else b""
            if len(existing) != offset * self._hasher.size:
                raise LedgerError(
                    "stored tile does not end where the new hashes start",
                    level=tile_level,
                    index=idx,
                )
            data = existing + b"".join(take)
            if offset:
                self._session.execute(
                    update(LedgerTile)
                    .where(LedgerTile.level == tile_level, LedgerTile.idx == idx)
                    .values(hashes=data)
                )
            else:
                self._session.execute(
                    insert(LedgerTile).values(level=tile_level, idx=idx, hashes=data)
                )
            position += len(take)
