"""Records the outbox could not store because its disk is full, held in memory until it
can: a pure core (no I/O, no clock).

The agent keeps running on a full disk. What it cannot write waits here and goes into the
outbox with the next write that succeeds. Memory is bounded: beyond ``max_records``
records are dropped and counted, cheapest first (bulk samples, raw frames, GNSS fixes,
health snapshots, other events), oldest first within each kind; urgent safety events go
last, and of those the newest are kept.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from edge_agent.outbox import Records
from protocol.records import Event, GnssFix, Health, RawFrame, SignalSeries

# About 100k signal samples, fixes or events: a few MB of Python objects, minutes of a
# drive's thinned signals, against the agent unit's MemoryMax of 384 MB.
HOLD_MAX_RECORDS: Final = 100_000


@dataclass
class HoldingArea:
    """Records in arrival order per kind, plus the newest replay checkpoint."""

    is_urgent: Callable[[str], bool]
    max_records: int = HOLD_MAX_RECORDS
    dropped: int = 0  # records dropped because the area was full (cumulative)
    checkpoint: bytes | None = None
    _signals: deque[SignalSeries] = field(default_factory=deque)
    _frames: deque[RawFrame] = field(default_factory=deque)
    _gnss: deque[GnssFix] = field(default_factory=deque)
    _health: deque[Health] = field(default_factory=deque)
    _other: deque[Event] = field(default_factory=deque)
    _urgent: deque[Event] = field(default_factory=deque)
    _count: int = 0

    def __post_init__(self) -> None:
        if self.max_records < 1:
            raise ValueError(f"max_records must be positive, not {self.max_records}")

    def __len__(self) -> int:
        """Records held (a signal series counts its samples, as the outbox does)."""
        return self._count

    def add(self, records: Records, checkpoint: bytes | None = None) -> int:
        """Hold ``records`` (and the checkpoint that goes with them, replacing an older
        one); returns how many records this dropped to stay within ``max_records``."""
        for event in records.events:
            (self._urgent if self.is_urgent(event.type) else self._other).append(event)
        self._signals.extend(records.signals)
        self._frames.extend(records.frames)
        self._gnss.extend(records.gnss)
        self._health.extend(records.health)
        self._count += (
            sum(len(s.times_ms) for s in records.signals)
            + len(records.events)
            + len(records.frames)
            + len(records.gnss)
            + len(records.health)
        )
        if checkpoint is not None:
            self.checkpoint = checkpoint
        return self._trim()

    def _trim(self) -> int:
        dropped = 0
        while self._count > self.max_records:
            if self._signals:
                n = len(self._signals.popleft().times_ms)
            else:
                for kind in (self._frames, self._gnss, self._health, self._other, self._urgent):
                    if kind:
                        kind.popleft()
                        break
                n = 1
            self._count -= n
            dropped += n
        self.dropped += dropped
        return dropped

    def take(self) -> tuple[Records, bytes | None]:
        """Everything held, in arrival order per kind, and the checkpoint; empties the area."""
        records = Records(
            events=tuple(sorted((*self._urgent, *self._other), key=lambda e: e.time_ms)),
            signals=tuple(self._signals),
            gnss=tuple(self._gnss),
            frames=tuple(self._frames),
            health=tuple(self._health),
        )
        checkpoint = self.checkpoint
        for kind in (self._signals, self._frames, self._gnss, self._health):
            kind.clear()
        self._other.clear()
        self._urgent.clear()
        self._count = 0
        self.checkpoint = None
        return records, checkpoint
