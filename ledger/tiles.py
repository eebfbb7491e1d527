"""Hash tiles: the stored interior of the Merkle tree.

Tile (L, N) holds up to 256 consecutive node hashes of tree level 8L, starting at
node 256N. Any perfect subtree hash is then one tile read plus at most 255 hashes
(levels between stored ones are recomputed), so a proof reads O(log n) rows.
Full tiles never change and are cached; the right-edge tile grows as blocks seal.
"""

from __future__ import annotations

from collections.abc import Iterable

from crypto.lru import Lru
from ledger.errors import MissingNode, TileRace
from ledger.merkle import TreeHasher
from ledger.storage import LogStore

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT


class TileCache:
    """A bounded, thread-safe LRU of full (immutable) tiles, raw and with inner levels.

    An expanded tile holds 511 hashes (about 40 KB with object overhead), so the
    default 1,024 entries stay near 40 MB at worst.
    """

    def __init__(self, max_tiles: int = 1024) -> None:
        self._tiles: Lru[tuple[int, int], bytes] = Lru(max_tiles)
        self._expanded: Lru[tuple[int, int], list[list[bytes]]] = Lru(max_tiles)

    def get(self, key: tuple[int, int]) -> bytes | None:
        return self._tiles.get(key)

    def put(self, key: tuple[int, int], tile: bytes) -> None:
        self._tiles.put(key, tile)

    def expanded(self, key: tuple[int, int]) -> list[list[bytes]] | None:
        """A full tile with all its inner levels computed, if cached."""
        return self._expanded.get(key)

    def put_expanded(self, key: tuple[int, int], levels: list[list[bytes]]) -> None:
        self._expanded.put(key, levels)

    def clear(self) -> None:
        self._tiles.clear()
        self._expanded.clear()


class Tiles:
    """Node reads and tile writes inside one transaction of a `LogStore`."""

    def __init__(self, store: LogStore, hasher: TreeHasher, cache: TileCache) -> None:
        self._store = store
        self._hasher = hasher
        self._cache = cache
        self._full = TILE_WIDTH * hasher.size
        self._read: dict[tuple[int, int], bytes] = {}  # this transaction's reads, partial too

    def tile(self, level: int, idx: int) -> bytes:
        """The stored bytes of tile (level, idx); empty if the tile does not exist yet."""
        key = (level, idx)
        data = self._read.get(key)
        if data is not None:
            return data
        data = self._cache.get(key)
        if data is None:
            data = self._store.read_tile(level, idx)
            if len(data) == self._full:
                self._cache.put(key, data)
        self._read[key] = data
        return data

    def node(self, level: int, index: int) -> bytes:
        """Hash of the perfect subtree at (level, index): a `merkle.NodeReader`."""
        tile_level, below = divmod(level, TILE_HEIGHT)
        first = index << below
        idx = first // TILE_WIDTH
        within = (first % TILE_WIDTH) >> below
        expanded = self._cache.expanded((tile_level, idx))
        if expanded is not None:
            return expanded[below][within]
        tile = self.tile(tile_level, idx)
        if len(tile) == self._full:
            expanded = self._expand(tile)
            self._cache.put_expanded((tile_level, idx), expanded)
            return expanded[below][within]
        size = self._hasher.size
        count = 1 << below
        offset = (first % TILE_WIDTH) * size
        if len(tile) < offset + count * size:
            raise MissingNode("node not sealed yet", level=level, index=index)
        hashes = [tile[offset + i * size : offset + (i + 1) * size] for i in range(count)]
        return self._fold(hashes)

    def _fold(self, hashes: list[bytes]) -> bytes:
        node = self._hasher.node
        while len(hashes) > 1:
            hashes = [node(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    def _expand(self, tile: bytes) -> list[list[bytes]]:
        """Every level inside a full tile: [256 hashes, 128, ..., 1] (511 in all)."""
        size = self._hasher.size
        node = self._hasher.node
        levels = [[tile[i * size : (i + 1) * size] for i in range(TILE_WIDTH)]]
        while len(levels[-1]) > 1:
            below = levels[-1]
            levels.append([node(below[i], below[i + 1]) for i in range(0, len(below), 2)])
        return levels

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
                # Another sealer extended this tile after our view of the log was taken
                # (issue 13): roll back and seal again from the newer block.
                raise TileRace(
                    "stored tile does not end where the new hashes start",
                    level=tile_level,
                    index=idx,
                )
            data = existing + b"".join(take)
            self._store.write_tile(tile_level, idx, data, stored=len(existing))
            self._read[(tile_level, idx)] = data
            position += len(take)
