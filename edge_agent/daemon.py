"""The agent: one TaskGroup owns every task, from CAN sources to the uplink.

Data path: sources -> frame feed -> pipeline -> (about once a second) outbox writer ->
batch closer -> uplink publisher -> broker; end-to-end acks -> outbox.acknowledge.
Nothing is published that was not first committed to the outbox.

The agent only wires parts it is given: its outbox, its uplink (whose link port the
tests replace), its clock and how to open a bus. :func:`open_agent` builds the real ones.
The periodic jobs (flush, batch closer, health, watchdog, STATUS=) share one scheduler
that sleeps until the earliest of their deadlines.

Shutdown (SIGTERM/SIGINT set ``stop``): stop reading, drain the pipeline into the outbox,
force-close staged records into batches, one bounded last publish that also waits for the
collector's acks of what it published, note how the drain ended in the outbox, exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from daemon_kit.logs import bind
from daemon_kit.sdnotify import Notifier
from edge_agent.assemble import build_pipeline
from edge_agent.clock import Clock, SystemClock
from edge_agent.config import AgentConfig, BusConfig
from edge_agent.errors import AgentError, OutboxError
from edge_agent.feed import (
    FixMerge,
    FrameFeed,
    SourceOpener,
    bus_source_opener,
    route_to,
    track_fixes,
)
from edge_agent.gnss import GpsdClient, parse_endpoint
from edge_agent.health import REASON_REPLAY_DONE, REASON_STOP, AgentInfo, ProbeValues
from edge_agent.outbox import Outbox
from edge_agent.pipeline import Pipeline
from edge_agent.probe import SystemProbe
from edge_agent.replay import AckWait, ReplayJob, ReplayReader, ReplayTimeoutError
from edge_agent.reporting import HealthReporter, SourceCounts, agent_version
from edge_agent.schedule import Scheduler
from edge_agent.uplink import Connector, Uplink, UplinkSettings, connect
from edge_agent.watch import Progress, Watch
from edge_agent.writer import OutboxWriter
from protocol.records import Event, GnssFix

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
# The health tracker is asked this often ([health] interval_s is the cadence): state
# changes (uplink, GNSS, camera, clock, a bus going silent) are noticed by polling.
HEALTH_POLL_S = 1.0
READER_STOP_S = 5.0
# While the drain waits for acks, how often it looks at the outbox without one.
DRAIN_POLL_S = 0.25

__all__ = ["Agent", "ReplayJob", "ReplayTimeoutError", "open_agent", "outbox_path", "run_agent"]


def outbox_path(config: AgentConfig, config_dir: Path) -> Path:
    path = Path(config.outbox.path)
    return path if path.is_absolute() else config_dir / path


@dataclass
class Agent:
    config: AgentConfig
    pipeline: Pipeline
    outbox: Outbox
    uplink: Uplink
    clock: Clock
    open_source: SourceOpener
    info: AgentInfo
    probe: Callable[[], ProbeValues]
    fixes: FixMerge = field(default_factory=FixMerge)
    replay: ReplayJob | None = None
    notifier: Notifier = field(default_factory=lambda: Notifier(None, None))
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    pending_report: str = ""
    events_found: int = 0

    def __post_init__(self) -> None:
        self.pipeline.on_event = self._on_event
        self.scheduler = Scheduler(self.clock)
        self.writer = OutboxWriter(self.outbox, self.clock)
        self.writer.on_deadline = functools.partial(self.scheduler.advance, "close")
        self.counts = SourceCounts()
        self._gpsd: GpsdClient | None = None
        self.reporter = HealthReporter(
            self.config,
            self.info,
            self.clock,
            self.pipeline,
            self.writer,
            self.uplink,
            self.probe,
            self.counts,
            gpsd=lambda: self._gpsd,
            started=self.clock.monotonic(),
        )
        self.reader: ReplayReader | None = None
        if self.replay is not None:
            reader = ReplayReader(
                self.replay,
                self.config,
                self.pipeline,
                self.writer,
                self.clock,
                self.fixes,
                self.stop,
            )
            self.counts.replay_malformed = lambda: reader.malformed_lines
            self.reader = reader
        self.acks = AckWait(self.writer, self.uplink, self.clock, self.stop)

    @property
    def frames_read(self) -> int:
        return 0 if self.reader is None else self.reader.frames_read

    def _on_event(self, event: Event) -> None:
        self.events_found += 1
        if self.reader is not None:
            self.reader.urgent.set()
        self.scheduler.wake("flush")

    # -- entry ---------------------------------------------------------------------------

    async def main(self) -> int:
        try:
            return await self._supervise()
        finally:
            self.notifier.close()

    async def _supervise(self) -> int:
        uplink_stop, jobs_stop = asyncio.Event(), asyncio.Event()
        # The "start" snapshot comes before any reader or link runs.
        await self.reporter.poll()
        self.scheduler.add("health", self._health_job, at=self.clock.monotonic() + HEALTH_POLL_S)
        self.scheduler.add("close", self._close_job)
        result = 0
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.uplink.run(uplink_stop))
                tg.create_task(self.scheduler.run(jobs_stop))
                if self.reader is not None:
                    result = await self._replay_flow(tg, self.reader)
                else:
                    await self._run_flow(tg)
                    await self._last_health(REASON_STOP)
                await self._drain()
                jobs_stop.set()
                uplink_stop.set()
        except* AgentError as group:
            raise group.exceptions[0] from None
        return result

    async def _close_job(self, now: float) -> float:
        closed, next_at = await self.writer.close_due(now)
        if closed:
            self.uplink.wake()
        return next_at

    async def _health_job(self, now: float) -> float:
        await self.reporter.poll()
        return now + HEALTH_POLL_S

    async def _flush_job(self, now: float) -> float:
        await self.writer.write(self.pipeline.drain())
        return now + FLUSH_INTERVAL_S

    async def _last_health(self, reason: str) -> None:
        """End the periodic snapshots and write one more, before the final force-close."""
        await self.scheduler.remove("health")
        await self.reporter.poll(reason)

    # -- run -----------------------------------------------------------------------------

    async def _run_flow(self, tg: asyncio.TaskGroup) -> None:
        readers = [tg.create_task(self._read_bus(bus)) for bus in self.config.bus]
        gnss = self.config.gnss
        if gnss is not None and gnss.gpsd is not None:
            host, port = parse_endpoint(gnss.gpsd)
            clock = self.clock
            self._gpsd = GpsdClient(
                host,
                port,
                wall_clock=lambda: clock.raw_wall_ms() / 1000,
                monotonic=clock.monotonic,
            )
            readers.append(tg.create_task(self._gpsd.run(self._on_fix, self.stop)))
        # Readers open their sources on their first step; a failure ends the task group.
        for _ in range(3):
            await asyncio.sleep(0)
        stats = await self.outbox.stats(self.clock.wall_ms())
        self.notifier.ready(
            f"started: {len(self.config.bus)} bus(es) open, outbox {stats.pending_batches} pending"
        )
        watch = self._watch()
        now = self.clock.monotonic()
        self.scheduler.add("flush", self._flush_job, at=now + FLUSH_INTERVAL_S)
        self.scheduler.add("watchdog", watch.watchdog)
        self.scheduler.add("status", watch.status, at=watch.first_status_at(now))
        await self.stop.wait()
        log.info("shutting down: stop reading, flush, last publish")
        self.notifier.stopping("stopping: draining the pipeline into the outbox")
        for name in ("watchdog", "status", "flush"):
            await self.scheduler.remove(name)
        for task in readers:
            try:
                await asyncio.wait_for(asyncio.shield(task), READER_STOP_S)
            except TimeoutError:
                task.cancel()

    def _watch(self) -> Watch:
        buses = [b.name for b in self.config.bus]

        def progress() -> Progress:
            flushing = self.writer.flushing_since
            return Progress(
                self.pipeline.frames,
                self.writer.commits,
                self.uplink.counters.acked_batches,
                work_waiting=self.counts.backlog() > 0 or flushing is not None,
                flushing_since=flushing,
            )

        return Watch(self.notifier, progress, lambda rate: self.reporter.status_line(rate, buses))

    def _on_fix(self, fix: GnssFix) -> None:
        self.pipeline.on_fix(fix, self.clock.wall_ms())

    async def _read_bus(self, bus: BusConfig) -> None:
        source = self.open_source(bus, self.pipeline.decoders[bus.name].can_ids)
        self.counts.sources[bus.name] = source
        feed = FrameFeed(self.pipeline, route_to(bus.name), self.fixes)
        try:
            async for frame in source.frames(self.stop):
                feed.push(frame)
        finally:
            source.close()

    # -- replay --------------------------------------------------------------------------

    async def _replay_flow(self, tg: asyncio.TaskGroup, reader: ReplayReader) -> int:
        reading = tg.create_task(reader.read())
        stopped = tg.create_task(self.stop.wait())
        await asyncio.wait({reading, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not reading.done():  # interrupted: the reader flushes its checkpoint and returns
            await reading
            stopped.cancel()
            await self._last_health(REASON_STOP)
            print("edge-agent: replay interrupted; run the same command to resume")  # noqa: T201 - to the person running replay
            return 1
        reading.result()
        # Health stops with the reading: a snapshot written while waiting for acks would
        # itself wait up to the health lane's batch age for its own ack.
        await self._last_health(REASON_REPLAY_DONE)
        await self.writer.close_batches(force=True)
        self.uplink.wake()
        job = reader.job
        try:
            return 0 if await self.acks.until_acked(job.timeout_s) else 1
        except TimeoutError:
            self.pending_report = await self.acks.pending(job.timeout_s)
            return 1
        finally:
            stopped.cancel()

    # -- shared --------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Flush what is left, close every staged record into a batch, publish briefly."""
        if self.replay is None:
            await self.writer.write(self.pipeline.drain(final=True))
        await self.writer.close_batches(force=True)
        if self.writer.holding():
            log.error(
                "exiting with %d records held in memory that the full disk did not take",
                len(self.writer.held),
            )
        acked_before = self.uplink.counters.acked_batches
        connected = self.uplink.connected.is_set()
        if connected:
            self.uplink.idle.clear()
            self.uplink.wake()
            # Published is not delivered: the collector's acks of the last batches come
            # a round trip later, and without them those batches are sent again next run.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.mqtt.last_publish_s):
                    await self.uplink.idle.wait()
                    await self._until_acked()
        await self._note_stop(self.uplink.counters.acked_batches - acked_before, connected)

    async def _until_acked(self) -> None:
        while (await self.outbox.stats(self.clock.wall_ms())).pending_batches:
            self.uplink.acked.clear()
            # Bounded: a batch left for a resend is looked at again without an ack.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.uplink.acked.wait(), DRAIN_POLL_S)

    async def _note_stop(self, acked: int, connected: bool) -> None:
        try:
            pending = (await self.outbox.stats(self.clock.wall_ms())).pending_batches
            log.info("drain: %d batch(es) acknowledged, %d left pending", acked, pending)
            values = {
                "time_ms": self.clock.wall_ms(),
                "acked_during_drain": acked,
                "pending_batches": pending,
                "connected": connected,
            }
            await self.outbox.note_stop(values)
        except OutboxError as exc:
            log.warning("cannot note the drain's outcome: %s", exc)


@contextlib.asynccontextmanager
async def open_agent(  # noqa: PLR0913 - each part injectable, all keyword-only
    config: AgentConfig,
    config_dir: Path,
    replay: ReplayJob | None = None,
    *,
    clock: Clock | None = None,
    connector: Connector | None = None,
    open_source: SourceOpener | None = None,
    notifier: Notifier | None = None,
    config_hash: str = "",
    stop: asyncio.Event | None = None,
) -> AsyncIterator[Agent]:
    """The agent with its real parts, unless given: what can fail on the configuration
    (TLS files, DBCs, the track file) fails before the outbox is opened."""
    clock = clock or SystemClock()
    settings = UplinkSettings.from_config(config, config_dir)
    fixes = track_fixes(config, config_dir, replaying=replay is not None)
    pipeline = build_pipeline(config, config_dir, [b.name for b in config.bus])
    outbox = await Outbox.open(
        outbox_path(config, config_dir),
        fleet_id=config.vehicle.fleet,
        vehicle_id=config.vehicle.id,
        max_bytes=config.outbox.max_bytes,
        reserve_bytes=config.outbox.reserve_bytes,
    )
    try:
        link = connector or functools.partial(connect, now_ms=clock.wall_ms)
        uplink = Uplink(
            settings, outbox, connector=link, monotonic=clock.monotonic, now_ms=clock.wall_ms
        )
        mode = "run" if replay is None else "replay"
        info = AgentInfo(mode, agent_version(), config_hash, config.health.interval_s)
        yield Agent(
            config,
            pipeline,
            outbox,
            uplink,
            clock,
            open_source=open_source or bus_source_opener(config_dir, clock),
            info=info,
            probe=SystemProbe(outbox_path(config, config_dir)).read,
            fixes=FixMerge(fixes),
            replay=replay,
            notifier=notifier or Notifier(None, None),
            stop=stop or asyncio.Event(),
        )
    finally:
        await outbox.close()


async def run_agent(
    config: AgentConfig,
    config_dir: Path,
    replay: ReplayJob | None,
    *,
    notifier: Notifier | None = None,
    config_hash: str = "",
    open_source: SourceOpener | None = None,
) -> int:
    """The agent until SIGTERM/SIGINT (or, for a replay, until acknowledged)."""
    # Every line this agent logs names its vehicle, whichever module logs it.
    bind(vehicle=f"{config.vehicle.fleet}/{config.vehicle.id}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with open_agent(
            config,
            config_dir,
            replay,
            notifier=notifier,
            config_hash=config_hash,
            open_source=open_source,
            stop=stop,
        ) as agent:
            code = await agent.main()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if replay is not None:
        summary = {
            "frames_read": agent.frames_read,
            "events": agent.events_found,
            "uplink": vars(agent.uplink.counters),
        }
        print(json.dumps({"summary": summary}), file=sys.stderr)  # noqa: T201 - replay's summary
    if agent.pending_report:
        raise ReplayTimeoutError(agent.pending_report)
    return code
