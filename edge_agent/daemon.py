"""The agent: one TaskGroup owns every task, from CAN sources to the uplink.

Data path: sources -> pipeline -> (about once a second) outbox.append -> batch closer ->
uplink publisher -> broker; end-to-end acks -> outbox.acknowledge. Nothing is published
that was not first committed to the outbox.

Shutdown (SIGTERM/SIGINT set ``stop``): stop reading, drain the pipeline into the outbox,
force-close staged records into batches, one bounded last publish, exit.

Replay checkpoints: every append of a replay stores, in the same transaction, how many
frames of the recording are behind it and the pickled state of the extractor and thinner.
A replay killed at any moment restarts from exactly that point with exactly that state, so
the outbox ends up with what one uninterrupted run would have produced. The pickle never
leaves the gateway (a private local file written by this program), which is why pickle is
acceptable here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from daemon_kit.sdnotify import Notifier, WatchdogGate
from edge_agent.assemble import build_pipeline
from edge_agent.batching import EVICTED_FOR_SPACE, EVICTION_CAUSE
from edge_agent.clock import (
    CLOCK_INVALID_KEY,
    clamp_records,
    clock_invalid,
    raw_wall_ms,
    wall_ms,
)
from edge_agent.config import AgentConfig, BusConfig
from edge_agent.errors import AgentError, ConfigError
from edge_agent.gnss import GpsdClient, parse_endpoint
from edge_agent.health import (
    DISK_FREE_BYTES,
    DISK_FULL,
    DISK_RESERVE_BYTES,
    OUTBOX_DROPPED_HELD,
    OUTBOX_HELD_RECORDS,
    OUTBOX_WRITE_FAILURES,
    REASON_REPLAY_DONE,
    REASON_STOP,
    DailyTotal,
    HealthTracker,
    bus_frames_key,
)
from edge_agent.holding import HoldingArea
from edge_agent.nmea import read_nmea
from edge_agent.outbox import (
    EVICTED_RECORDS,
    INTEGRITY_COUNTERS,
    Outbox,
    OutboxFullError,
    OutboxStats,
    Records,
)
from edge_agent.pipeline import Pipeline
from edge_agent.sources import BusSource, FrameLike, ReplaySource
from edge_agent.uplink import (
    HEALTH_LINK_RATE,
    HEALTH_PUBLISH_TIMEOUTS,
    Uplink,
    UplinkSettings,
)
from protocol.records import Event, GnssFix, Health, Scalar

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
CLOSE_INTERVAL_S = 0.5
HEALTH_POLL_S = 1.0  # how often the health tracker is asked; [health] interval_s is the cadence
STATUS_INTERVAL_S = 5.0  # sd_notify STATUS= updates
MAIN_TICK_S = 0.5  # longest main-loop turn (shorter with a short watchdog)
ACK_POLL_S = 0.2
PACKAGE = "taxi-adas-ingest"
CHECKPOINT_VERSION = 1


class ReplayTimeoutError(AgentError):
    """A replay's batches were not all acknowledged end to end in time."""


def outbox_path(config: AgentConfig, config_dir: Path) -> Path:
    path = Path(config.outbox.path)
    return path if path.is_absolute() else config_dir / path


@dataclass
class Checkpoint:
    """Where a replay stands, stored with every outbox append of that replay."""

    recording: str
    frames_done: int  # frames of the recording whose records are in the outbox
    finished: bool
    state: bytes  # pickled (extractor, thinner) after those frames

    def dump(self) -> bytes:
        return pickle.dumps(
            (CHECKPOINT_VERSION, self.recording, self.frames_done, self.finished, self.state)
        )

    @classmethod
    def load(cls, blob: bytes) -> Checkpoint:
        try:
            version, recording, done, finished, state = pickle.loads(blob)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means "unusable"
            raise AgentError(f"the outbox holds an unreadable replay checkpoint: {exc}") from None
        if version != CHECKPOINT_VERSION:
            raise AgentError(f"replay checkpoint version {version} is not supported")
        return cls(str(recording), int(done), bool(finished), bytes(state))


@dataclass
class ReplayJob:
    recording: Path
    channel: str | None = None
    speed: float = 1.0
    timeout_s: float = 120.0


@dataclass
class Agent:
    config: AgentConfig
    config_dir: Path
    replay: ReplayJob | None = None
    # Injected by tests; the real ones read the clocks.
    now_ms: Callable[[], int] = wall_ms
    monotonic: Callable[[], float] = time.monotonic
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    # systemd notification; the entry point builds it from the environment.
    notifier: Notifier = field(default_factory=lambda: Notifier(None, None))
    config_hash: str = ""
    # Test hook (edge-agent run only): after this many frames every reader blocks until
    # shutdown, holding its frame, so the pipeline stalls while the process lives.
    stall_after_frames: int | None = None
    pending_report: str = ""
    frames_read: int = 0  # by this process (a resumed replay skips the ones already done)
    events_found: int = 0
    commits: int = 0  # outbox appends of pipeline records (health snapshots not counted)

    def __post_init__(self) -> None:
        # Fail on TLS files and the like before anything is opened.
        self.settings = UplinkSettings.from_config(self.config, self.config_dir)
        names = [b.name for b in self.config.bus]
        self.pipeline: Pipeline = build_pipeline(
            self.config, self.config_dir, names, self._on_event
        )
        self._urgent = asyncio.Event()
        self._fixes: deque[GnssFix] = deque(self._track())
        self._gpsd: GpsdClient | None = None
        self._busy: set[str] = set()  # readers holding a frame they have not processed
        self._flushing_since: float | None = None  # monotonic start of an outbox append
        self._heartbeat = 0
        self._last_progress = 0
        self._started = self.monotonic()
        self._tracker = HealthTracker(
            self.config.health.interval_s,
            buses=tuple(names),
            silent_after_s=self.config.health.bus_silent_after_s,
        )
        self._bytes_today = DailyTotal()
        self._version = _agent_version()
        self._disk_full = False  # the last outbox write failed for lack of space

    def _track(self) -> list[GnssFix]:
        """Fixes of ``[gnss] nmea``, for replay buses and ``edge-agent replay``."""
        gnss = self.config.gnss
        path = None if gnss is None else gnss.nmea_path(self.config_dir)
        if path is None:
            return []
        live = [b.name for b in self.config.bus if b.interface != "replay"]
        if live and self.replay is None:
            raise ConfigError(
                f"key 'gnss.nmea': a track file only goes with replay buses, not {live}; "
                "use 'gnss.gpsd' for live buses"
            )
        if not path.is_file():
            raise ConfigError(f"key 'gnss.nmea': file not found: {path}")
        return sorted(read_nmea(path), key=lambda f: f.time_ms)

    def _on_event(self, event: Event) -> None:
        self.events_found += 1
        self._urgent.set()

    def _feed_fixes(self, upto_s: float) -> None:
        """Track fixes up to a frame's time go in first, as gpsd would have delivered them."""
        fixes = self._fixes
        while fixes and fixes[0].time_ms <= upto_s * 1000:
            fix = fixes.popleft()
            self.pipeline.on_fix(fix, fix.time_ms)

    def _drop_fixes(self, upto_s: float) -> None:
        while self._fixes and self._fixes[0].time_ms <= upto_s * 1000:
            self._fixes.popleft()

    # -- entry ---------------------------------------------------------------------------

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        self.outbox = await Outbox.open(
            outbox_path(self.config, self.config_dir),
            fleet_id=self.config.vehicle.fleet,
            vehicle_id=self.config.vehicle.id,
            max_bytes=self.config.outbox.max_bytes,
            reserve_bytes=self.config.outbox.reserve_bytes,
        )
        self.uplink = Uplink(self.settings, self.outbox)
        self._held = HoldingArea(self.outbox.policy.is_urgent)
        try:
            return await self._supervise()
        finally:
            await self.outbox.close()
            self.notifier.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    async def _supervise(self) -> int:
        uplink_stop = asyncio.Event()
        closer_stop = asyncio.Event()
        health_stop = asyncio.Event()
        result = 0
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.uplink.run(uplink_stop))
                tg.create_task(self._closer(closer_stop))
                health = tg.create_task(self._health_loop(health_stop))
                if self.replay is not None:
                    result = await self._replay_flow(tg, self.replay, health_stop, health)
                else:
                    await self._run_flow(tg)
                    await self._last_health(health_stop, health, REASON_STOP)
                await self._drain()
                closer_stop.set()
                uplink_stop.set()
        except* AgentError as group:
            raise group.exceptions[0] from None
        return result

    # -- run -----------------------------------------------------------------------------

    async def _run_flow(self, tg: asyncio.TaskGroup) -> None:
        readers = [tg.create_task(self._read_bus(bus)) for bus in self.config.bus]
        flusher = tg.create_task(self._flusher())
        gnss = self.config.gnss
        if gnss is not None and gnss.gpsd is not None:
            host, port = parse_endpoint(gnss.gpsd)
            self._gpsd = GpsdClient(host, port)
            readers.append(tg.create_task(self._gpsd.run(self._on_fix, self.stop)))
        # Readers open their sources on their first step; a failure ends the task group.
        for _ in range(3):
            await asyncio.sleep(0)
        stats = await self.outbox.stats(self.now_ms())
        self.notifier.ready(
            f"started: {len(self.config.bus)} bus(es) open, outbox {stats.pending_batches} pending"
        )
        await self._main_loop()
        log.info("shutting down: stop reading, flush, last publish")
        self.notifier.stopping("stopping: draining the pipeline into the outbox")
        for task in readers:
            try:
                await asyncio.wait_for(asyncio.shield(task), 5.0)
            except TimeoutError:
                task.cancel()
        flusher.cancel()

    async def _main_loop(self) -> None:
        """Until stop: the watchdog (pings only while the pipeline moves, see
        daemon_kit.sdnotify) and readable STATUS= lines."""
        interval = self.notifier.watchdog_interval_s
        gate = None
        tick = MAIN_TICK_S
        if interval is not None:
            # 2/3 of WatchdogSec (20 s of 30 s): a stall is caught within one period.
            gate = WatchdogGate(stall_after_s=interval * 4 / 3, ping_every_s=interval)
            tick = min(MAIN_TICK_S, interval / 4)
        # The first update after 2 s (a frame rate needs some time), then every interval.
        last_status = self.monotonic() - STATUS_INTERVAL_S + 2.0
        last_frames = (self.monotonic(), self.pipeline.frames)
        while not self.stop.is_set():
            now = self.monotonic()
            if gate is not None and gate.observe(now, self._progress(now, gate.stall_after_s)):
                self.notifier.watchdog()
            if now - last_status >= STATUS_INTERVAL_S:
                frames = self.pipeline.frames
                rate = (frames - last_frames[1]) / max(now - last_frames[0], 1e-3)
                last_frames = (now, frames)
                last_status = now
                self.notifier.status(await self._status_line(rate))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), tick)

    def _progress(self, now: float, stuck_after_s: float) -> int:
        """Frames processed + pipeline commits + acked batches + idle heartbeat.

        The heartbeat ticks only on a turn with no work waiting: no reader holds an
        unprocessed frame and no outbox append is in progress. An append taking longer
        than ``stuck_after_s`` freezes the value (frames piling up in memory behind a hung
        outbox are not progress). A blocked reader or outbox thus stops the pings.
        """
        flushing = self._flushing_since
        if flushing is not None and now - flushing > stuck_after_s:
            return self._last_progress
        if not self._busy and flushing is None:
            self._heartbeat += 1
        self._last_progress = (
            self.pipeline.frames
            + self.commits
            + self.uplink.counters.acked_batches
            + self._heartbeat
        )
        return self._last_progress

    async def _status_line(self, frames_per_s: float) -> str:
        stats = await self.outbox.stats(self.now_ms())
        active = sum(self._tracker.bus_active(self.monotonic(), b.name) for b in self.config.bus)
        state = "streaming" if frames_per_s > 0 else "idle"
        link = "connected" if self.uplink.connected.is_set() else "disconnected"
        mode = self._gnss_mode()
        gnss = "" if mode is None else f", gnss {_MODE_NAMES.get(mode, str(mode))}"
        return (
            f"{state}: {len(self.config.bus)} buses ({active} active), "
            f"{frames_per_s:.0f} frames/s, outbox {stats.pending_batches} pending, "
            f"uplink {link}{gnss}"
        )

    def _on_fix(self, fix: GnssFix) -> None:
        self.pipeline.on_fix(fix, self.now_ms())

    async def _stall(self, bus: str) -> bool:
        """The test hook: block holding a frame once enough frames went through."""
        if self.stall_after_frames is None or self.pipeline.frames < self.stall_after_frames:
            return False
        log.warning("test hook: pipeline stalled after %d frames", self.pipeline.frames)
        self._busy.add(bus)
        await self.stop.wait()
        return True

    async def _read_bus(self, bus: BusConfig) -> None:
        if bus.interface == "replay":
            path = Path(bus.channel)
            source = ReplaySource(
                path if path.is_absolute() else self.config_dir / path,
                logged_channel=bus.logged_channel,
            )
            async for frame in source.paced(1.0):
                if self.stop.is_set() or await self._stall(bus.name):
                    return
                self._feed_fixes(frame.timestamp)
                self.pipeline.on_frame(bus.name, frame)
            return
        ids = self.pipeline.decoders[bus.name].can_ids
        kwargs: dict[str, Any] = {} if bus.bitrate is None else {"bitrate": bus.bitrate}
        live = BusSource(bus.interface, bus.channel, ids, **kwargs)
        try:
            async for frame in live.frames(self.stop):
                if await self._stall(bus.name):
                    return
                self.pipeline.on_frame(bus.name, frame)
        finally:
            live.close()

    async def _flusher(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._urgent.wait(), FLUSH_INTERVAL_S)
            self._urgent.clear()
            await self._flush(None)

    # -- health --------------------------------------------------------------------------

    async def _health_loop(self, stop: asyncio.Event) -> None:
        """Polls the tracker on wall time (monotonic), in run and replay alike."""
        while not stop.is_set():
            await self._health(None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEALTH_POLL_S)

    async def _health(self, force: str | None) -> None:
        counters: dict[str, float] = {
            bus_frames_key(bus): c.frames for bus, c in self.pipeline.counters.items()
        }
        counters["cpu_s"] = time.process_time()
        mode = self._gnss_mode()
        state: dict[str, Scalar] = {
            "uplink_connected": self.uplink.connected.is_set(),
            "gnss_fix": None if mode is None else mode >= 2,
            "camera_failsafe": self.pipeline.camera_failsafe,
            "camera_tamper": self.pipeline.camera_tamper,
            DISK_FULL: self._disk_full,
            CLOCK_INVALID_KEY: clock_invalid(raw_wall_ms()),
        }
        due = self._tracker.poll(self.monotonic(), counters, state, force=force)
        if due is None:
            return
        now_ms = self.now_ms()
        stats = await self.outbox.stats(now_ms)
        values = self._health_values(stats, now_ms, due.reason, due.rates, due.state)
        await self._store(Records(health=(Health(now_ms, values),)), None)

    def _gnss_mode(self) -> int | None:
        if self._gpsd is not None:
            return self._gpsd.fix_mode
        fix = self.pipeline.last_fix
        if fix is not None:
            return fix.mode
        return None if self.config.gnss is None else 0

    def _health_values(
        self,
        stats: OutboxStats,
        now_ms: int,
        reason: str,
        rates: dict[str, float],
        state: dict[str, Scalar],
    ) -> dict[str, Scalar]:
        """The snapshot; docs/health.md documents every key."""
        up = self.uplink.counters
        day = int(now_ms // 86_400_000)
        values: dict[str, Scalar] = {
            "health_reason": reason,
            "health_interval_s": self.config.health.interval_s,
            "agent_mode": "replay" if self.replay is not None else "run",
            "agent_version": self._version,
            "config_hash": self.config_hash,
            "uptime_s": round(self.monotonic() - self._started, 1),
            "outbox_pending_batches": stats.pending_batches,
            "outbox_pending_bytes": stats.pending_bytes,
            "outbox_unpublished_batches": stats.unpublished_batches,
            "outbox_staged_records": stats.staged_records,
            "outbox_staged_bytes": stats.staged_bytes,
            "outbox_oldest_age_ms": stats.oldest_pending_age_ms,
            "acked_seq": stats.highest_acked_seq,
            "next_seq": stats.next_seq,
            "uplink_connected": self.uplink.connected.is_set(),
            "reconnects": max(up.connects - 1, 0),
            "uplink_connects": up.connects,
            "uplink_connect_failures": up.connect_failures,
            "uplink_disconnects": up.disconnects,
            "uplink_published": up.published,
            "uplink_published_bytes": up.published_bytes,
            "uplink_resent": up.resent,
            "uplink_acks": up.acks,
            "uplink_acked_batches": up.acked_batches,
            "puback_rtt_ms": up.last_puback_rtt_ms,
            "ack_rtt_ms": up.last_ack_rtt_ms,
            HEALTH_LINK_RATE: up.link_rate_bytes_per_s,
            HEALTH_PUBLISH_TIMEOUTS: up.publish_timeouts,
            "bytes_sent_today": self._bytes_today.update(day, up.published_bytes),
        }
        for cause in (*EVICTION_CAUSE.values(), EVICTED_RECORDS, EVICTED_FOR_SPACE):
            values[cause] = stats.counters.get(cause, 0)
        values["dropped_invalid"] = stats.counters.get("dropped_invalid", 0)
        for name in INTEGRITY_COUNTERS:
            values[name] = stats.counters.get(name, 0)
        decode_errors = error_frames = 0
        for bus, c in self.pipeline.counters.items():
            values[f"bus_{bus}_fps"] = round(rates.get(bus_frames_key(bus), 0.0), 1)
            values[f"bus_{bus}_frames"] = c.frames
            values[f"bus_{bus}_error_frames"] = c.error_frames
            values[f"bus_{bus}_decode_errors"] = c.decode_errors
            values[f"bus_{bus}_unknown_id"] = c.unknown_id
            values[f"bus_{bus}_active"] = state.get(f"bus_{bus}_active")
            decode_errors += c.decode_errors
            error_frames += c.error_frames
        values["decode_errors"] = decode_errors
        values["error_frames"] = error_frames
        values["gnss_mode"] = self._gnss_mode()
        values["gnss_fix"] = state.get("gnss_fix")
        latest = self._gpsd.latest if self._gpsd is not None else None
        values["clock_offset_ms"] = None if latest is None else latest.clock_offset_ms
        values[CLOCK_INVALID_KEY] = state.get(CLOCK_INVALID_KEY)
        if self._gpsd is not None:
            values.update(self._gpsd.stats())
        values["camera_failsafe"] = self.pipeline.camera_failsafe
        values["camera_tamper"] = self.pipeline.camera_tamper
        values[DISK_FREE_BYTES] = _disk_free(outbox_path(self.config, self.config_dir))
        values[DISK_RESERVE_BYTES] = self.outbox.reserve_bytes
        values[DISK_FULL] = self._disk_full
        values[OUTBOX_WRITE_FAILURES] = self.outbox.space_failures
        values[OUTBOX_HELD_RECORDS] = len(self._held)
        values[OUTBOX_DROPPED_HELD] = self._held.dropped
        values["cpu_s"] = round(time.process_time(), 2)
        cpu_rate = rates.get("cpu_s")
        values["cpu_pct"] = None if cpu_rate is None else round(cpu_rate * 100, 1)
        values["rss_bytes"] = _rss_bytes()
        return values

    # -- replay --------------------------------------------------------------------------

    async def _last_health(
        self, health_stop: asyncio.Event, health: asyncio.Task[None], reason: str
    ) -> None:
        """End the periodic snapshots and write one more, before the final force-close."""
        health_stop.set()
        await health
        await self._health(reason)

    async def _replay_flow(
        self,
        tg: asyncio.TaskGroup,
        job: ReplayJob,
        health_stop: asyncio.Event,
        health: asyncio.Task[None],
    ) -> int:
        reader = tg.create_task(self._replay_frames(job))
        stopped = tg.create_task(self.stop.wait())
        await asyncio.wait({reader, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not reader.done():  # interrupted: the reader flushes its checkpoint and returns
            await reader
            stopped.cancel()
            await self._last_health(health_stop, health, REASON_STOP)
            print("edge-agent: replay interrupted; run the same command to resume")
            return 1
        reader.result()
        # Health stops with the reading: a snapshot written while waiting for acks would
        # itself wait up to the health lane's batch age for its own ack.
        await self._last_health(health_stop, health, REASON_REPLAY_DONE)
        await self._close_batches(force=True)
        self.uplink.wake()
        try:
            async with asyncio.timeout(job.timeout_s):
                while not await self._all_acknowledged():
                    if self.stop.is_set():
                        return 1
                    if self._holding():
                        # A full disk refused the last writes: retry them, then close
                        # what they staged, so the replay ends only once they are acked.
                        await self._store(Records(), None)
                        if await self._close_batches(force=True):
                            self.uplink.wake()
                    await asyncio.sleep(ACK_POLL_S)
        except TimeoutError:
            self.pending_report = await self._pending(job.timeout_s)
            return 1
        finally:
            stopped.cancel()
        return 0

    def _holding(self) -> bool:
        return self._held.checkpoint is not None or len(self._held) > 0

    async def _all_acknowledged(self) -> bool:
        if self._holding():
            return False
        stats = await self.outbox.stats(self.now_ms())
        return stats.pending_batches == 0 and stats.staged_records == 0

    async def _pending(self, timeout_s: float) -> str:
        stats = await self.outbox.stats(self.now_ms())
        due = await self.outbox.due_for_publish(limit=1_000_000, resend_after_ms=0)
        seqs = _ranges(sorted(b.seq for b in due))
        link = "connected" if self.uplink.connected.is_set() else "not connected"
        return (
            f"replay not acknowledged after {timeout_s:g} s: {stats.pending_batches} batch(es) "
            f"pending (epoch {stats.epoch}, seqs {seqs or '-'}), {stats.staged_records} "
            f"record(s) staged, {len(self._held)} held in memory for lack of disk space; "
            f"broker {self.settings.host}:{self.settings.port} {link}"
        )

    def _route(self, job: ReplayJob) -> Callable[[str], str | None]:
        with_channel = {
            b.logged_channel: b.name for b in self.config.bus if b.logged_channel is not None
        }
        if with_channel:
            return with_channel.get
        if len(self.config.bus) == 1:
            name = self.config.bus[0].name
            return lambda _channel: name
        raise AgentError(
            "config has several buses but none names its 'logged_channel'; "
            "set bus[].logged_channel to map the recording's channels"
        )

    async def _replay_frames(self, job: ReplayJob) -> None:
        """Feed the recording through the pipeline, resuming from the stored checkpoint."""
        recording = str(job.recording.resolve())
        stored = await self.outbox.load_checkpoint()
        start = 0
        if stored is not None:
            cp = Checkpoint.load(stored)
            if cp.recording != recording:
                raise AgentError(
                    f"the outbox holds a replay of {cp.recording}; finish it or use another "
                    "outbox path for a different recording"
                )
            if cp.finished:
                log.info("replay already read completely; waiting for acks only")
                return
            self.pipeline.extractor, self.pipeline.thinner = pickle.loads(cp.state)
            start = cp.frames_done
            log.info("resuming replay after frame %d", start)
        route = self._route(job)
        source = ReplaySource(job.recording, logged_channel=job.channel)
        frames = 0
        last_flush = time.monotonic()
        pace = _Pacer(job.speed)
        skipped = _Skip(start)
        for frames, frame in enumerate(skipped.frames(source.frames()), start + 1):
            if frames == start + 1 and skipped.last_stamp is not None:
                # Track fixes up to the resumed frames went out with them (and are in the
                # restored extractor state): do not feed them twice.
                self._drop_fixes(skipped.last_stamp)
            self.frames_read += 1
            bus = route(str(frame.channel))
            if bus is not None:
                self._feed_fixes(frame.timestamp)
                self.pipeline.on_frame(bus, frame)
            await pace.wait(frame.timestamp)
            if frames % 256 == 0:
                if self.stop.is_set():
                    break
                if time.monotonic() - last_flush >= FLUSH_INTERVAL_S or self._urgent.is_set():
                    self._urgent.clear()
                    await self._flush((recording, frames, False))
                    last_flush = time.monotonic()
                    await asyncio.sleep(0)
        else:
            frames = max(frames, start)
            await self._flush((recording, frames, True))
            return
        await self._flush((recording, frames, False))

    def _state(self) -> bytes:
        return pickle.dumps((self.pipeline.extractor, self.pipeline.thinner))

    # -- shared --------------------------------------------------------------------------

    async def _flush(self, replay_position: tuple[str, int, bool] | None) -> None:
        """Hand everything the pipeline holds to the outbox, in one transaction; for a
        replay, with the checkpoint ``(recording, frames_done, finished)``.

        The state is pickled after the drain (a thinner still holding samples would emit
        them again after a restore), and both happen synchronously, so no frame is
        processed between them.
        """
        p = self.pipeline
        records = Records(
            events=tuple(p.events), signals=tuple(p.thinner.drain()), gnss=tuple(p.fixes)
        )
        p.events.clear()
        p.fixes.clear()
        blob = None
        if replay_position is not None:
            blob = Checkpoint(*replay_position, self._state()).dump()
        self._flushing_since = self.monotonic()
        try:
            # A wall clock before 1970 stamps live frames with negative times, which the
            # outbox would refuse as a whole: keep the records, clamped (health flags it).
            stored = await self._store(clamp_records(records), blob)
        finally:
            self._flushing_since = None
        if stored and (records.events or records.signals or records.gnss):
            self.commits += 1

    async def _store(self, records: Records, checkpoint: bytes | None) -> bool:
        """Append ``records`` to the outbox, after whatever is held from earlier writes.

        On a full disk (after the outbox evicted what it could) they are held in memory
        instead and the agent keeps running: a restart would find the same full disk and
        lose what the pipeline holds. Returns whether they were written.
        """
        held = self._held
        if len(held) or held.checkpoint is not None:
            held.add(records, checkpoint)
            records, checkpoint = held.take()
        try:
            await self.outbox.append(records, self.now_ms(), checkpoint)
        except OutboxFullError as exc:
            held.add(records, checkpoint)
            if not self._disk_full:
                log.error(
                    "DISK FULL: %s; records are held in memory (up to %d, then the "
                    "cheapest are dropped) until there is room again",
                    exc,
                    held.max_records,
                )
            self._disk_full = True
            return False
        if self._disk_full:
            log.warning(
                "outbox writable again: held records written; %d dropped while the disk was full",
                held.dropped,
            )
        self._disk_full = False
        return True

    async def _close_batches(self, *, force: bool) -> int:
        """Close due batches; on a full disk the staged records stay staged (they are
        already stored) and are closed once there is room."""
        try:
            return await self.outbox.close_due_batches(self.now_ms(), force=force)
        except OutboxFullError as exc:
            log.debug("%s", exc)
            return 0

    async def _closer(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if await self._close_batches(force=False):
                self.uplink.wake()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), CLOSE_INTERVAL_S)

    async def _drain(self) -> None:
        """Flush what is left, close every staged record into a batch, publish briefly."""
        if self.replay is None:
            await self._flush(None)
        await self._close_batches(force=True)
        if self._holding():
            log.error(
                "exiting with %d records held in memory that the full disk did not take",
                len(self._held),
            )
        if not self.uplink.connected.is_set():
            return
        self.uplink.idle.clear()
        self.uplink.wake()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.uplink.idle.wait(), self.config.mqtt.last_publish_s)


class _Pacer:
    """Sleeps so frames go out at ``speed`` times their recorded pace (0 = no pacing)."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._origin: tuple[float, float] | None = None

    async def wait(self, stamp: float) -> None:
        if self.speed <= 0:
            return
        if self._origin is None:
            self._origin = (time.monotonic(), stamp)
            return
        wall0, rec0 = self._origin
        delay = (stamp - rec0) / self.speed - (time.monotonic() - wall0)
        if delay > 0.005:
            await asyncio.sleep(delay)


class _Skip:
    """Skips the first ``n`` frames, remembering the latest timestamp among them."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.last_stamp: float | None = None

    def frames(self, frames: Iterator[FrameLike]) -> Iterator[FrameLike]:
        for i, frame in enumerate(frames):
            if i >= self.n:
                yield frame
            elif self.last_stamp is None or frame.timestamp > self.last_stamp:
                self.last_stamp = frame.timestamp


_MODE_NAMES = {0: "unknown", 1: "no fix", 2: "2D", 3: "3D"}


def _agent_version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"


def _disk_free(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path.parent).free
    except OSError:
        return None


def _rss_bytes() -> int | None:
    """Resident set size from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * _PAGE_SIZE


def _page_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4096


_PAGE_SIZE = _page_size()


def _ranges(seqs: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1..3, 7"``: a long backlog stays one readable line."""
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs)


async def run_agent(
    config: AgentConfig,
    config_dir: Path,
    replay: ReplayJob | None,
    *,
    notifier: Notifier | None = None,
    config_hash: str = "",
    stall_after_frames: int | None = None,
) -> int:
    agent = Agent(
        config,
        config_dir,
        replay,
        notifier=notifier if notifier is not None else Notifier(None, None),
        config_hash=config_hash,
        stall_after_frames=stall_after_frames,
    )
    code = await agent.main()
    if replay is not None:
        summary = {
            "frames_read": agent.frames_read,
            "events": agent.events_found,
            "uplink": vars(agent.uplink.counters),
        }
        print(json.dumps({"summary": summary}), file=sys.stderr)
    if agent.pending_report:
        raise ReplayTimeoutError(agent.pending_report)
    return code
