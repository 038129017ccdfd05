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
``bus_<name>_fps`` is the mean frame rate over the interval it covers.

:func:`health_values` builds the snapshot itself from its inputs (:class:`HealthInputs`:
counters, state, outbox stats, probe values, times): also pure. No clock is read here and
no file; :mod:`edge_agent.probe` reads the system. docs/health.md lists every key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.batching import EVICTED_FOR_SPACE, EVICTION_CAUSE
from protocol.contracts import (
    ACK_RTT_MS,
    ACKED_SEQ,
    AGENT_MODE,
    AGENT_VERSION,
    BYTES_SENT_TODAY,
    CAMERA_FAILSAFE_KEY,
    CAMERA_TAMPER_KEY,
    CLOCK_INVALID,
    CLOCK_OFFSET_MS,
    CONFIG_HASH,
    CPU_PCT,
    CPU_S,
    DECODE_ERRORS,
    DISK_FREE_BYTES,
    DISK_FULL,
    DISK_RESERVE_BYTES,
    DROPPED_INVALID,
    ERROR_FRAMES,
    EVICTED_RECORDS,
    EVIDENCE_BYTES_TODAY,
    EVIDENCE_DAY_CAP_BYTES,
    EVIDENCE_DROPPED_BYTES,
    EVIDENCE_DROPPED_EVENTS,
    EVIDENCE_EVENTS,
    EVIDENCE_RING_BYTES,
    GNSS_FIX,
    GNSS_MODE,
    HEALTH_INTERVAL_S,
    HEALTH_REASON,
    INTEGRITY_KEYS,
    NEXT_SEQ,
    OUTBOX_DROPPED_HELD,
    OUTBOX_HELD_RECORDS,
    OUTBOX_OLDEST_AGE_MS,
    OUTBOX_PENDING_BATCHES,
    OUTBOX_PENDING_BYTES,
    OUTBOX_STAGED_BYTES,
    OUTBOX_STAGED_RECORDS,
    OUTBOX_UNPUBLISHED_BATCHES,
    OUTBOX_WRITE_FAILURES,
    PUBACK_RTT_MS,
    RECONNECTS,
    REPLAY_MALFORMED_LINES,
    RSS_BYTES,
    SOURCE_DROPPED_FRAMES,
    UPLINK_ACKED_BATCHES,
    UPLINK_ACKS,
    UPLINK_CONNECT_FAILURES,
    UPLINK_CONNECTED,
    UPLINK_CONNECTS,
    UPLINK_DISCONNECTS,
    UPLINK_PUBLISH_TIMEOUTS,
    UPLINK_PUBLISHED,
    UPLINK_PUBLISHED_BYTES,
    UPLINK_RATE,
    UPLINK_RESENT,
    UPTIME_S,
)
from protocol.records import Scalar

if TYPE_CHECKING:
    from edge_agent.evidence import Evidence
    from edge_agent.outbox import OutboxStats
    from edge_agent.pipeline import BusCounters
    from edge_agent.uplink import UplinkCounters

REASON_START = "start"
REASON_INTERVAL = "interval"
REASON_STOP = "stop"
REASON_REPLAY_DONE = "replay_done"


def bus_frames_key(bus: str) -> str:
    """The counter name the tracker reads a bus's cumulative frame count from."""
    return f"bus_{bus}_frames"


def bus_key(bus: str, what: str) -> str:
    """``bus_<name>_<what>``: fps, frames, error_frames, decode_errors, unknown_id,
    active, dropped."""
    return f"bus_{bus}_{what}"


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


@dataclass(frozen=True)
class AgentInfo:
    """What stays the same for the whole life of the process."""

    mode: str  # "run" or "replay"
    version: str
    config_hash: str
    interval_s: float


@dataclass(frozen=True)
class ProbeValues:
    """What the system says about this process (edge_agent.probe)."""

    cpu_s: float
    rss_bytes: int | None
    disk_free_bytes: int | None


@dataclass(frozen=True)
class DiskInputs:
    reserve_bytes: int
    full: bool
    write_failures: int
    held_records: int
    dropped_held: int


@dataclass(frozen=True)
class GnssInputs:
    mode: int | None
    clock_offset_ms: int | None
    client_stats: Mapping[str, int]  # gpsd client counters; empty without gpsd


@dataclass(frozen=True)
class HealthInputs:
    reason: str
    uptime_s: float
    info: AgentInfo
    outbox: OutboxStats
    disk: DiskInputs
    uplink: UplinkCounters
    uplink_connected: bool
    bytes_sent_today: int
    buses: Mapping[str, BusCounters]
    source_dropped: Mapping[str, int]  # bus -> frames its reader's queue dropped
    malformed_lines: int  # recording lines skipped as unreadable
    due: Due
    gnss: GnssInputs
    camera_failsafe: bool | None
    camera_tamper: bool | None
    probe: ProbeValues
    evidence: Evidence | None = None  # None: evidence is off


def health_values(inputs: HealthInputs) -> dict[str, Scalar]:
    """The snapshot; docs/health.md documents every key."""
    return {
        **_process_values(inputs),
        **_outbox_values(inputs.outbox),
        **_uplink_values(inputs),
        **_bus_values(inputs),
        **_gnss_camera_values(inputs),
        **_evidence_values(inputs.evidence),
    }


def _process_values(i: HealthInputs) -> dict[str, Scalar]:
    cpu_rate = i.due.rates.get(CPU_S)
    return {
        HEALTH_REASON: i.reason,
        HEALTH_INTERVAL_S: i.info.interval_s,
        AGENT_MODE: i.info.mode,
        AGENT_VERSION: i.info.version,
        CONFIG_HASH: i.info.config_hash,
        UPTIME_S: round(i.uptime_s, 1),
        DISK_FREE_BYTES: i.probe.disk_free_bytes,
        DISK_RESERVE_BYTES: i.disk.reserve_bytes,
        DISK_FULL: i.disk.full,
        OUTBOX_WRITE_FAILURES: i.disk.write_failures,
        OUTBOX_HELD_RECORDS: i.disk.held_records,
        OUTBOX_DROPPED_HELD: i.disk.dropped_held,
        CPU_S: round(i.probe.cpu_s, 2),
        CPU_PCT: None if cpu_rate is None else round(cpu_rate * 100, 1),
        RSS_BYTES: i.probe.rss_bytes,
    }


def _outbox_values(stats: OutboxStats) -> dict[str, Scalar]:
    values: dict[str, Scalar] = {
        OUTBOX_PENDING_BATCHES: stats.pending_batches,
        OUTBOX_PENDING_BYTES: stats.pending_bytes,
        OUTBOX_UNPUBLISHED_BATCHES: stats.unpublished_batches,
        OUTBOX_STAGED_RECORDS: stats.staged_records,
        OUTBOX_STAGED_BYTES: stats.staged_bytes,
        OUTBOX_OLDEST_AGE_MS: stats.oldest_pending_age_ms,
        ACKED_SEQ: stats.highest_acked_seq,
        NEXT_SEQ: stats.next_seq,
    }
    counted = (*EVICTION_CAUSE.values(), EVICTED_RECORDS, EVICTED_FOR_SPACE, DROPPED_INVALID)
    for name in (*counted, *INTEGRITY_KEYS):
        values[name] = stats.counters.get(name, 0)
    return values


def _uplink_values(i: HealthInputs) -> dict[str, Scalar]:
    up = i.uplink
    return {
        UPLINK_CONNECTED: i.uplink_connected,
        RECONNECTS: max(up.connects - 1, 0),
        UPLINK_CONNECTS: up.connects,
        UPLINK_CONNECT_FAILURES: up.connect_failures,
        UPLINK_DISCONNECTS: up.disconnects,
        UPLINK_PUBLISHED: up.published,
        UPLINK_PUBLISHED_BYTES: up.published_bytes,
        UPLINK_RESENT: up.resent,
        UPLINK_ACKS: up.acks,
        UPLINK_ACKED_BATCHES: up.acked_batches,
        PUBACK_RTT_MS: up.last_puback_rtt_ms,
        ACK_RTT_MS: up.last_ack_rtt_ms,
        UPLINK_RATE: up.link_rate_bytes_per_s,
        UPLINK_PUBLISH_TIMEOUTS: up.publish_timeouts,
        BYTES_SENT_TODAY: i.bytes_sent_today,
    }


def _bus_values(i: HealthInputs) -> dict[str, Scalar]:
    values: dict[str, Scalar] = {}
    decode_errors = error_frames = 0
    for bus, c in i.buses.items():
        values[bus_key(bus, "fps")] = round(i.due.rates.get(bus_frames_key(bus), 0.0), 1)
        values[bus_key(bus, "frames")] = c.frames
        values[bus_key(bus, "error_frames")] = c.error_frames
        values[bus_key(bus, "decode_errors")] = c.decode_errors
        values[bus_key(bus, "unknown_id")] = c.unknown_id
        values[bus_key(bus, "active")] = i.due.state.get(bus_key(bus, "active"))
        values[bus_key(bus, "dropped")] = i.source_dropped.get(bus, 0)
        decode_errors += c.decode_errors
        error_frames += c.error_frames
    values[DECODE_ERRORS] = decode_errors
    values[ERROR_FRAMES] = error_frames
    values[SOURCE_DROPPED_FRAMES] = sum(i.source_dropped.values())
    values[REPLAY_MALFORMED_LINES] = i.malformed_lines
    return values


def _gnss_camera_values(i: HealthInputs) -> dict[str, Scalar]:
    return {
        GNSS_MODE: i.gnss.mode,
        GNSS_FIX: i.due.state.get(GNSS_FIX),
        CLOCK_OFFSET_MS: i.gnss.clock_offset_ms,
        CLOCK_INVALID: i.due.state.get(CLOCK_INVALID),
        **i.gnss.client_stats,
        CAMERA_FAILSAFE_KEY: i.camera_failsafe,
        CAMERA_TAMPER_KEY: i.camera_tamper,
    }


def _evidence_values(evidence: Evidence | None) -> dict[str, Scalar]:
    if evidence is None:
        return {
            EVIDENCE_DAY_CAP_BYTES: None,
            EVIDENCE_BYTES_TODAY: None,
            EVIDENCE_EVENTS: 0,
            EVIDENCE_DROPPED_EVENTS: 0,
            EVIDENCE_DROPPED_BYTES: 0,
            EVIDENCE_RING_BYTES: 0,
        }
    stats = evidence.stats
    return {
        EVIDENCE_DAY_CAP_BYTES: stats.day_cap_bytes,
        EVIDENCE_BYTES_TODAY: stats.bytes_today,
        EVIDENCE_EVENTS: stats.events,
        EVIDENCE_DROPPED_EVENTS: stats.dropped_events,
        EVIDENCE_DROPPED_BYTES: stats.dropped_bytes,
        EVIDENCE_RING_BYTES: evidence.ring_bytes(),
    }
