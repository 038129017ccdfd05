"""A cache of encoded vector tiles in the collector's memory (pure: no I/O, the clock is
passed in).

Entries are bounded by bytes (least recently used first out) and by time: a tile of a
settled period (no new rows expected) is kept for ``SETTLED_TTL_MS``, a tile of a recent
period only ``RECENT_TTL_MS``, so a new ingest shows on the map within that time whatever
process served the tile; the roads (no period) for ``ROADS_TTL_MS``. The key holds
everything the tile's bytes depend on: layer, z, x, y, the period, the type filter and the
caller's view (``k``: the city's k-anonymous view and the unrestricted one never share an
entry).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

# Bytes of bookkeeping counted per entry besides its body (key, tuple, dict slot).
ENTRY_OVERHEAD: Final = 256
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
RECENT_TTL_MS: Final = 10_000
SETTLED_TTL_MS: Final = 86_400_000
# The roads layer has no period; new streets may take this long to show.
ROADS_TTL_MS: Final = 300_000


@dataclass(frozen=True, slots=True)
class TileKey:
    layer: str
    z: int
    x: int
    y: int
    since_ms: int
    until_ms: int
    type: str | None
    k: int  # the caller's view: 0 unrestricted, > 0 the city's k-anonymous view


@dataclass(frozen=True, slots=True)
class CachedTile:
    body: bytes
    etag: str
    expires_ms: int


class TileCache:
    """Encoded tiles by ``TileKey``, at most ``max_bytes`` (bodies plus a fixed overhead
    each); ``max_bytes`` 0 caches nothing."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[TileKey, CachedTile] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: TileKey, now_ms: int, *, count_miss: bool = True) -> CachedTile | None:
        """The live entry of ``key``; ``count_miss`` False: a look that the caller follows
        with a counted ``get`` when it finds nothing (a miss is counted once)."""
        found = self._entries.get(key)
        if found is None or found.expires_ms <= now_ms:
            if found is not None:
                self._drop(key)
            if count_miss:
                self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found

    def put(self, key: TileKey, tile: CachedTile) -> None:
        size = len(tile.body) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = tile
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: TileKey) -> None:
        self.bytes -= len(self._entries.pop(key).body) + ENTRY_OVERHEAD
