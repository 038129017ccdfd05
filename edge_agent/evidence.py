"""Raw evidence for urgent events: a ring of each bus's latest raw frames, bounded in bytes,
and the window policy that cuts an urgent event's frames out of it (by default 5 s before
the event and 2 s after), within a byte budget per UTC day.

Pure: no I/O and no clock. Times are the frames' own, so live, replayed and decoded drives
behave alike; a capture's "after" window closes when a later frame of any bus passes it, or
when the pipeline is drained for the last time. What the ring evicts and what the budget
or the open-capture limit refuses is counted (health: ``evidence_*``).

A frame is kept as one packed ``bytes`` object (time, id, flags, data), which costs a
quarter of a tuple of Python values: the ring's memory is what bounds it at full load.
"""

from __future__ import annotations

import struct
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from edge_agent.sources import FrameLike
from protocol.records import Event, RawFrame

MiB: Final = 1024 * 1024
DAY_MS: Final = 86_400_000
US_PER_MS: Final = 1000
# time (µs), arbitration id, extended flag; the data bytes follow.
_ENTRY: Final = struct.Struct("<qI?")
_HEAD: Final = _ENTRY.size
_PACK: Final = _ENTRY.pack
# What one kept frame costs besides its packed bytes: the bytes object and its deque slot.
ENTRY_OVERHEAD: Final = sys.getsizeof(b"") + 8
# What a frame adds to the uplink before compression besides its data: time offset, id,
# bus name, flag and link, as msgpack writes them (a generous estimate; the budget counts it).
WIRE_BYTES_PER_FRAME: Final = 16


@dataclass(frozen=True, slots=True)
class EvidenceSettings:
    """``[evidence]`` of the agent's configuration, with its defaults."""

    enabled: bool = True
    before_ms: int = 5_000
    after_ms: int = 2_000
    ring_bytes: int = 2 * MiB  # per bus
    day_cap_bytes: int = 16 * MiB  # frames' data plus WIRE_BYTES_PER_FRAME each, per UTC day
    max_open: int = 4  # captures collecting their "after" frames at once, per bus


# Frames between two looks for frames older than the ring needs to keep.
TRIM_EVERY: Final = 256


class FrameRing:
    """The latest raw frames of one bus: at most ``cap_bytes`` of memory, and (looked at
    every TRIM_EVERY frames) nothing older than ``keep_us`` before the newest frame, so
    memory follows the bus load below the cap."""

    __slots__ = ("_cap", "_entries", "_keep_us", "_pushes", "evicted", "used")

    def __init__(self, cap_bytes: int, keep_us: int | None = None) -> None:
        self._cap = cap_bytes
        self._keep_us = keep_us
        self._entries: deque[bytes] = deque()
        self._pushes = 0
        self.used = 0  # bytes held, ENTRY_OVERHEAD included
        self.evicted = 0  # frames pushed out by the byte cap (not by age), since start

    def push(self, time_us: int, can_id: int, extended: bool, data: bytes | bytearray) -> bytes:
        entry = _PACK(time_us, can_id, extended) + data
        self._entries.append(entry)
        self.used += len(entry) + ENTRY_OVERHEAD
        if self.used > self._cap:
            self._evict()
        self._pushes += 1
        if not self._pushes % TRIM_EVERY and self._keep_us is not None:
            self._trim(time_us - self._keep_us)
        return entry

    def _trim(self, oldest_us: int) -> None:
        entries = self._entries
        while entries and entry_time(entries[0]) < oldest_us:
            self.used -= len(entries.popleft()) + ENTRY_OVERHEAD

    def _evict(self) -> None:
        entries = self._entries
        while self.used > self._cap:
            self.used -= len(entries.popleft()) + ENTRY_OVERHEAD
            self.evicted += 1

    def __len__(self) -> int:
        return len(self._entries)

    def since(self, start_us: int) -> list[bytes]:
        """The frames at or after ``start_us``, oldest first (frames arrive in time order
        per bus; the walk stops at the first older one)."""
        picked: list[bytes] = []
        for entry in reversed(self._entries):
            if entry_time(entry) < start_us:
                break
            picked.append(entry)
        picked.reverse()
        return picked

    def latest_us(self) -> int | None:
        return entry_time(self._entries[-1]) if self._entries else None


def entry_time(entry: bytes) -> int:
    time_us: int = _ENTRY.unpack_from(entry)[0]
    return time_us


def entry_frame(entry: bytes, bus: str, event_ms: int | None) -> RawFrame:
    time_us, can_id, extended = _ENTRY.unpack_from(entry)
    return RawFrame(bus, time_us, can_id, entry[_HEAD:], extended, event_ms)


def entry_cost(entry: bytes) -> int:
    """What a kept frame counts against the daily budget."""
    return len(entry) - _HEAD + WIRE_BYTES_PER_FRAME


@dataclass(slots=True)
class _Capture:
    event_ms: int
    end_us: int
    entries: list[bytes]


@dataclass
class EvidenceStats:
    """Counters since start, and the budget of the current UTC day."""

    day_cap_bytes: int
    day: int = -1  # UTC day number of ``bytes_today``
    bytes_today: int = 0
    # A capture of this day did not fit: no more are opened until the next day, so a
    # flapping camera costs no memory or work once its budget is gone.
    day_full: bool = False
    events: int = 0  # captures handed over for the outbox
    frames: int = 0
    dropped_events: int = 0  # urgent events whose evidence was not kept
    dropped_bytes: int = 0  # what the dropped captures would have cost (0 if never opened)


@dataclass
class Evidence:
    """Rings per bus and the captures of urgent events; fed by the pipeline."""

    settings: EvidenceSettings
    is_urgent: Callable[[str], bool]
    stats: EvidenceStats = field(init=False)
    _rings: dict[str, FrameRing] = field(default_factory=dict)
    _open: dict[str, list[_Capture]] = field(default_factory=dict)
    _done: list[RawFrame] = field(default_factory=list)
    # (bus, event time) of captures opened, so events of one frame share one capture.
    _taken: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stats = EvidenceStats(self.settings.day_cap_bytes)

    def ring(self, bus: str) -> FrameRing:
        ring = self._rings.get(bus)
        if ring is None:
            keep_us = self.settings.before_ms * US_PER_MS
            ring = self._rings[bus] = FrameRing(self.settings.ring_bytes, keep_us)
        return ring

    def on_frame(self, bus: str, frame: FrameLike) -> None:
        """The hot path: one pack and append per frame, and a look at open captures."""
        ring = self._rings.get(bus)
        if ring is None:
            ring = self.ring(bus)
        time_us = round(frame.timestamp * 1_000_000)
        entry = ring.push(time_us, frame.arbitration_id, frame.is_extended_id, frame.data)
        if self._open.get(bus):
            self._extend(bus, self._open[bus], time_us, entry)

    def _extend(self, bus: str, captures: list[_Capture], time_us: int, entry: bytes) -> None:
        for capture in list(captures):
            if time_us > capture.end_us:
                captures.remove(capture)
                self._finish(bus, capture)
            else:
                capture.entries.append(entry)

    def on_event(self, event: Event) -> None:
        """Open a capture for an urgent event that names its bus."""
        source = event.source
        if source is None or not self.is_urgent(event.type):
            return
        bus, event_ms = source.bus, event.time_ms
        if self._taken.get(bus) == event_ms:
            return  # another event of the same frame: the same window, already captured
        self._taken[bus] = event_ms
        self._roll_day(event_ms)
        captures = self._open.setdefault(bus, [])
        if self.stats.day_full or len(captures) >= self.settings.max_open:
            self.stats.dropped_events += 1
            return
        start_us = (event_ms - self.settings.before_ms) * US_PER_MS
        end_us = (event_ms + self.settings.after_ms) * US_PER_MS + US_PER_MS - 1
        captures.append(_Capture(event_ms, end_us, self.ring(bus).since(start_us)))

    def _roll_day(self, time_ms: int) -> None:
        day = time_ms // DAY_MS
        if day != self.stats.day:
            self.stats.day, self.stats.bytes_today, self.stats.day_full = day, 0, False

    def _finish(self, bus: str, capture: _Capture) -> None:
        """Hand a complete capture over, or drop it whole when it would pass the budget."""
        stats = self.stats
        cost = sum(map(entry_cost, capture.entries))
        self._roll_day(capture.event_ms)
        if stats.bytes_today + cost > stats.day_cap_bytes:
            stats.day_full = True
            stats.dropped_events += 1
            stats.dropped_bytes += cost
            return
        stats.bytes_today += cost
        stats.events += 1
        stats.frames += len(capture.entries)
        self._done.extend(entry_frame(e, bus, capture.event_ms) for e in capture.entries)

    def take(self, *, final: bool = False) -> tuple[RawFrame, ...]:
        """The frames of completed captures. A capture completes when a frame of any bus is
        past its window (a silent bus must not hold it), or on the ``final`` take."""
        latest = max(
            (t for r in self._rings.values() if (t := r.latest_us()) is not None), default=None
        )
        for bus, captures in self._open.items():
            for capture in list(captures):
                if final or (latest is not None and latest > capture.end_us):
                    captures.remove(capture)
                    self._finish(bus, capture)
        done = tuple(self._done)
        self._done.clear()
        return done

    def ring_bytes(self) -> int:
        return sum(r.used for r in self._rings.values())

    def ring_evicted(self) -> int:
        return sum(r.evicted for r in self._rings.values())
