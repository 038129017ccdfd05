"""When to take a health snapshot, and the per-interval rates in it: a pure core.

``HealthTracker.poll(now, counters, state)`` is called about once a second by the agent's
health task with a monotonic ``now`` (seconds), cumulative ``counters`` (frames per bus,
CPU seconds, ...) and the discrete ``state`` (uplink connected, GNSS fix, camera failsafe
and tamper). It returns a :class:`Due` when a snapshot should be written, else None:

* ``"start"``: the first poll;
* ``"change:<keys>"``: a state value differs from the last snapshot's (including a bus
  going silent or active, which the tracker derives from the frame counters), at most one
  such snapshot per ``min_gap_s`` (a flapping value cannot flood the outbox: the change is
  reported by the first poll after the gap, compared with the last snapshot taken);
* ``"interval"``: ``interval_s`` passed since the last snapshot.

Rates (``Due.rates``) are the counters' growth per second since the previous snapshot, so
``bus_<name>_fps`` is the mean frame rate over the interval it covers. No clock is read
here; docs/health.md lists the keys the agent builds from this.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from protocol.records import Scalar

REASON_START = "start"
REASON_INTERVAL = "interval"
REASON_STOP = "stop"
REASON_REPLAY_DONE = "replay_done"

# Keys about the outbox's disk, in snapshots and read back by ``status --human``.
DISK_FULL = "disk_full"  # state key: the last outbox write failed for lack of space
DISK_FREE_BYTES = "disk_free_bytes"
DISK_RESERVE_BYTES = "disk_reserve_bytes"
OUTBOX_WRITE_FAILURES = "outbox_write_failures"
OUTBOX_HELD_RECORDS = "outbox_held_records"
OUTBOX_DROPPED_HELD = "outbox_dropped_held"


def bus_frames_key(bus: str) -> str:
    """The counter name the tracker reads a bus's cumulative frame count from."""
    return f"bus_{bus}_frames"


@dataclass(frozen=True)
class Due:
    reason: str
    elapsed_s: float | None  # since the previous snapshot; None for the first
    rates: dict[str, float] = field(default_factory=dict)  # counter name -> per second
    state: dict[str, Scalar] = field(default_factory=dict)  # incl. bus_<name>_active


class HealthTracker:
    def __init__(
        self,
        interval_s: float,
        *,
        buses: tuple[str, ...] = (),
        silent_after_s: float = 5.0,
        min_gap_s: float = 1.0,
    ) -> None:
        if interval_s <= 0 or silent_after_s <= 0 or min_gap_s < 0:
            raise ValueError("interval_s and silent_after_s must be positive, min_gap_s >= 0")
        self.interval_s = interval_s
        self.buses = buses
        self.silent_after_s = silent_after_s
        self.min_gap_s = min_gap_s
        self._last_at: float | None = None
        self._last_counters: dict[str, float] = {}
        self._last_state: dict[str, Scalar] = {}
        self._frames_seen: dict[str, float] = {}
        self._frame_at: dict[str, float] = {}

    def bus_active(self, now: float, bus: str) -> bool:
        at = self._frame_at.get(bus)
        return at is not None and now - at <= self.silent_after_s

    def _track_buses(self, now: float, counters: Mapping[str, float]) -> dict[str, Scalar]:
        active: dict[str, Scalar] = {}
        for bus in self.buses:
            frames = counters.get(bus_frames_key(bus))
            if frames is not None and frames != self._frames_seen.get(bus, 0):
                self._frames_seen[bus] = frames
                self._frame_at[bus] = now
            active[f"bus_{bus}_active"] = self.bus_active(now, bus)
        return active

    def poll(
        self,
        now: float,
        counters: Mapping[str, float],
        state: Mapping[str, Scalar],
        *,
        force: str | None = None,
    ) -> Due | None:
        """A snapshot is due (and counted as taken) or None; ``force`` names a reason
        that makes one due regardless (e.g. ``"stop"`` at shutdown)."""
        full_state = {**state, **self._track_buses(now, counters)}
        reason = force
        if reason is None:
            reason = self._reason(now, full_state)
        if reason is None:
            return None
        elapsed = None if self._last_at is None else now - self._last_at
        rates: dict[str, float] = {}
        if elapsed is not None and elapsed > 0:
            for name, value in counters.items():
                before = self._last_counters.get(name)
                if before is not None and value >= before:
                    rates[name] = (value - before) / elapsed
        self._last_at = now
        self._last_counters = dict(counters)
        self._last_state = full_state
        return Due(reason, elapsed, rates, full_state)

    def _reason(self, now: float, state: Mapping[str, Scalar]) -> str | None:
        if self._last_at is None:
            return REASON_START
        since = now - self._last_at
        keys = state.keys() | self._last_state.keys()
        changed = sorted(k for k in keys if state.get(k) != self._last_state.get(k))
        if changed and since >= self.min_gap_s:
            return "change:" + ",".join(changed)
        if since >= self.interval_s:
            return REASON_INTERVAL
        return None


class DailyTotal:
    """A cumulative counter seen per UTC day: ``update(day, total)`` returns the part of
    ``total`` counted since ``day`` began (or since the first update, if later)."""

    def __init__(self) -> None:
        self._day: int | None = None
        self._base = 0

    def update(self, day: int, total: int) -> int:
        if self._day is None:
            self._day = day  # the agent's start: everything counted so far is today's
        elif day != self._day:
            self._day, self._base = day, total
        if total < self._base:  # the counter restarted
            self._base = 0
        return total - self._base


def config_hash(path: Path) -> str:
    """First 12 hex digits of the SHA-256 of the config file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
