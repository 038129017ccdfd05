"""Health snapshots and status lines: gathers the inputs, the pure cores decide and build.

:class:`HealthReporter` asks the tracker (``edge_agent.health.HealthTracker``) whether a
snapshot is due, and if so builds it with ``health_values`` from the pipeline's counters,
the outbox's stats, the uplink's counters and the system probe, and stores it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata

from edge_agent.clock import Clock, clock_invalid
from edge_agent.config import AgentConfig
from edge_agent.feed import FrameSource
from edge_agent.gnss import GpsdClient
from edge_agent.health import (
    AgentInfo,
    DailyTotal,
    DiskInputs,
    Due,
    GnssInputs,
    HealthInputs,
    HealthTracker,
    ProbeValues,
    bus_frames_key,
    health_values,
)
from edge_agent.outbox import OutboxStats, Records
from edge_agent.pipeline import Pipeline
from edge_agent.uplink import Uplink
from edge_agent.writer import OutboxWriter
from protocol.contracts import CPU_S, DISK_FULL
from protocol.records import Health, Scalar

PACKAGE = "taxi-edge-agent"
_MODE_NAMES = {0: "unknown", 1: "no fix", 2: "2D", 3: "3D"}


def agent_version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class SourceCounts:
    """Frames lost by the readers and lines skipped in recordings, over every source."""

    sources: dict[str, FrameSource] = field(default_factory=dict)  # bus -> its reader
    replay_malformed: Callable[[], int] = lambda: 0  # edge-agent replay's recording

    def dropped(self) -> dict[str, int]:
        return {bus: s.dropped for bus, s in self.sources.items()}

    def malformed_lines(self) -> int:
        return self.replay_malformed() + sum(s.malformed_lines for s in self.sources.values())

    def backlog(self) -> int:
        return sum(s.backlog for s in self.sources.values())


@dataclass
class HealthReporter:
    config: AgentConfig
    info: AgentInfo
    clock: Clock
    pipeline: Pipeline
    writer: OutboxWriter
    uplink: Uplink
    probe: Callable[[], ProbeValues]
    sources: SourceCounts
    gpsd: Callable[[], GpsdClient | None] = lambda: None
    started: float = 0.0  # monotonic

    def __post_init__(self) -> None:
        self.tracker = HealthTracker(
            self.config.health.interval_s,
            buses=tuple(b.name for b in self.config.bus),
            silent_after_s=self.config.health.bus_silent_after_s,
        )
        self._bytes_today = DailyTotal()

    def gnss_mode(self) -> int | None:
        gpsd = self.gpsd()
        if gpsd is not None:
            return gpsd.fix_mode
        fix = self.pipeline.last_fix
        if fix is not None:
            return fix.mode
        return None if self.config.gnss is None else 0

    def _state(self) -> dict[str, Scalar]:
        mode = self.gnss_mode()
        return {
            "uplink_connected": self.uplink.connected.is_set(),
            "gnss_fix": None if mode is None else mode >= 2,
            "camera_failsafe": self.pipeline.camera_failsafe,
            "camera_tamper": self.pipeline.camera_tamper,
            DISK_FULL: self.writer.disk_full,
            "clock_invalid": clock_invalid(self.clock.raw_wall_ms()),
        }

    async def poll(self, force: str | None = None) -> None:
        """Store a snapshot if one is due (always with ``force``, the reason)."""
        probe = self.probe()
        counters: dict[str, float] = {
            bus_frames_key(bus): c.frames for bus, c in self.pipeline.counters.items()
        }
        counters[CPU_S] = probe.cpu_s
        now = self.clock.monotonic()
        due = self.tracker.poll(now, counters, self._state(), force=force)
        if due is None:
            return
        now_ms = self.clock.wall_ms()
        stats = await self.writer.outbox.stats(now_ms)
        snapshot = Health(now_ms, health_values(self._inputs(due, now, now_ms, stats, probe)))
        await self.writer.store(Records(health=(snapshot,)), None)

    def _inputs(
        self, due: Due, now: float, now_ms: int, stats: OutboxStats, probe: ProbeValues
    ) -> HealthInputs:
        up = self.uplink.counters
        gpsd = self.gpsd()
        latest = None if gpsd is None else gpsd.latest
        w = self.writer
        return HealthInputs(
            reason=due.reason,
            uptime_s=now - self.started,
            info=self.info,
            outbox=stats,
            disk=DiskInputs(
                reserve_bytes=w.outbox.reserve_bytes,
                full=w.disk_full,
                write_failures=w.outbox.space_failures,
                held_records=len(w.held),
                dropped_held=w.held.dropped,
            ),
            uplink=up,
            uplink_connected=self.uplink.connected.is_set(),
            bytes_sent_today=self._bytes_today.update(now_ms // 86_400_000, up.published_bytes),
            buses=self.pipeline.counters,
            source_dropped=self.sources.dropped(),
            malformed_lines=self.sources.malformed_lines(),
            due=due,
            gnss=GnssInputs(
                self.gnss_mode(),
                None if latest is None else latest.clock_offset_ms,
                {} if gpsd is None else gpsd.stats(),
            ),
            camera_failsafe=self.pipeline.camera_failsafe,
            camera_tamper=self.pipeline.camera_tamper,
            evidence=self.pipeline.evidence,
            probe=probe,
        )

    async def status_line(self, frames_per_s: float, buses: Sequence[str]) -> str:
        stats = await self.writer.outbox.stats(self.clock.wall_ms())
        now = self.clock.monotonic()
        active = sum(self.tracker.bus_active(now, b) for b in buses)
        state = "streaming" if frames_per_s > 0 else "idle"
        link = "connected" if self.uplink.connected.is_set() else "disconnected"
        mode = self.gnss_mode()
        gnss = "" if mode is None else f", gnss {_MODE_NAMES.get(mode, str(mode))}"
        return (
            f"{state}: {len(buses)} buses ({active} active), "
            f"{frames_per_s:.0f} frames/s, outbox {stats.pending_batches} pending, "
            f"uplink {link}{gnss}"
        )
