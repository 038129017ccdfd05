"""How much room the outbox's filesystem has, read with ``statvfs`` now and then rather
than at every commit.

The outbox evicts for space once free space is below its reserve (``reserve_bytes``,
edge_agent.batching.eviction_need). That guard only has to notice the reserve being
crossed, so a reading is reused, less the bytes the outbox itself wrote since, until it
is ``STATVFS_EVERY_S`` old, ``STATVFS_EVERY_BYTES`` were written since, or the estimate is
below the reserve. Below the reserve every write reads afresh, as before, so the eviction
works on exact figures. Pure: the reading and the clock are given.

What a reused reading can miss is space taken by something else in the meantime: at most
``STATVFS_EVERY_S`` late (the default reserve is 32 MiB; the agent writes a few kB/s).
The full-disk guarantees never rested on this reading: a write the disk refuses
(SQLITE_FULL) makes room by evicting without it and is tried again, and the writer holds
the records in memory if there is still no room (edge_agent.writer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

# A reading is used for at most this long (seconds, outbox clock) ...
STATVFS_EVERY_S: Final = 5.0
# ... and for at most this many bytes written by the outbox since.
STATVFS_EVERY_BYTES: Final = 256 << 10


@dataclass
class FreeSpaceGauge:
    read: Callable[[], int | None]  # free bytes now (statvfs), None if unknown
    clock: Callable[[], float]  # monotonic seconds
    every_s: float = STATVFS_EVERY_S
    every_bytes: int = STATVFS_EVERY_BYTES
    reads: int = 0  # statvfs calls so far
    _free: int | None = None  # the last reading
    _read_at: float | None = None  # when it was taken (None: read at the next call)
    _written: int = 0  # bytes written since

    def free_bytes(self, adding: int, reserve_bytes: int) -> int | None:
        """Free bytes before a write of ``adding`` bytes (as a reading taken now would say
        but for space others took since a recent reading), then counts the write."""
        now = self.clock()
        if not self._recent(now, reserve_bytes):
            self._free, self._read_at, self._written = self.read(), now, 0
            self.reads += 1
        free = None if self._free is None else self._free - self._written
        self._written += max(0, adding)
        return free

    def _recent(self, now: float, reserve_bytes: int) -> bool:
        """Whether the last reading may stand in for a new one."""
        return (
            self._free is not None
            and self._read_at is not None
            and now - self._read_at < self.every_s
            and self._written < self.every_bytes
            and self._free - self._written >= reserve_bytes
        )

    def forget(self) -> None:
        """A write failed for lack of space: the next call reads afresh."""
        self._read_at = None
