"""One simulated taxi: the edge agent from the record level down.

Its own outbox file, ``OutboxWriter`` (the agent's one way into the outbox), the agent's
``Scheduler`` running the batch closer at the writer's deadlines, and the real ``Uplink``
(own MQTT session and client id, epoch and seqs, urgent and bulk lanes, resends, full-jitter
reconnect backoff). Only the source differs: records come from the behaviour model
(``fleet_sim.model``) instead of the CAN pipeline, flushed about once a real second as the
agent's flush job does.

Life cycle events come from the simulated clock: ignition off at a shift change (a clean
stop: batches closed, a bounded wait for acks, a clean outbox close), a power cut (the TCP
connection dropped without an MQTT DISCONNECT, so the broker publishes the will; tasks
dropped; the outbox left without its clean-close marker, so the next open starts a new
epoch) and the city-wide network outage (``Outage``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from edge_agent.clock import SystemClock
from edge_agent.outbox import Outbox, Records
from edge_agent.schedule import Scheduler
from edge_agent.uplink import Link, MqttLink, Uplink, UplinkError, UplinkSettings, connect
from edge_agent.writer import OutboxWriter
from fleet_sim.model import TaxiModel
from protocol import Ack, decode_batch
from protocol.contracts import (
    AGENT_MODE,
    HEALTH_REASON,
    OUTBOX_PENDING_BATCHES,
    UPLINK_ACKED_BATCHES,
    UPLINK_CONNECTED,
    UPLINK_CONNECTS,
    UPLINK_PUBLISHED_BYTES,
    URGENT_EVENT_TYPES,
)
from protocol.records import Health
from protocol.topics import Channel

FLUSH_S: Final = 1.0  # real seconds between flushes, as the agent's flush job
HEALTH_S: Final = 60.0  # real seconds between health snapshots
REBOOT_S: Final = 60  # simulated seconds a gateway needs after a power cut
STOP_ACK_WAIT_S: Final = 5.0  # bounded wait for acks at ignition off (the agent's drain)
DONE_POLL_S: Final = 0.5
MAX_SAMPLES: Final = 50_000


@dataclass
class SimClock:
    """Simulated seconds since the run's start: real time since ``real_start`` times speed."""

    real_start: float
    speed: float
    end_s: int

    def now_s(self) -> int:
        return min(self.end_s, int((time.time() - self.real_start) * self.speed))

    async def until(self, sim_s: int) -> None:
        """Sleep until the simulated clock reaches ``sim_s``."""
        wait = self.real_start + sim_s / self.speed - time.time()
        if wait > 0:
            await asyncio.sleep(wait)


@dataclass
class Outage:
    """The city-wide network outage: no connect succeeds and live sessions break."""

    window: tuple[int, int] | None
    clock: SimClock
    down: asyncio.Event = field(default_factory=asyncio.Event)

    async def watch(self) -> None:
        if self.window is None:
            return
        await self.clock.until(self.window[0])
        self.down.set()
        await self.clock.until(self.window[1])
        self.down.clear()


@dataclass
class Latency:
    """Urgent events from their record time to the end-to-end ack, in real milliseconds.

    A record's real time is when the simulated clock passed its time stamp; samples are
    kept up to ``MAX_SAMPLES`` per worker.
    """

    clock: SimClock
    start_ms: int
    pending: dict[tuple[str, int, int], list[float]] = field(default_factory=dict)
    samples: list[float] = field(default_factory=list)

    def published(self, topic: str, payload: bytes) -> None:
        if not topic.endswith("/" + Channel.EVENT):
            return
        batch = decode_batch(payload)
        h = batch.header
        times = [
            self.clock.real_start + (e.time_ms - self.start_ms) / 1000 / self.clock.speed
            for e in batch.events
            if e.type in URGENT_EVENT_TYPES
        ]
        self.pending[(h.vehicle_id, h.epoch, h.seq)] = times

    def acked(self, ack: Ack) -> None:
        now = time.time()
        done = [
            key
            for key in self.pending
            if key[0] == ack.vehicle_id and key[1] == ack.epoch and key[2] <= ack.seq
        ]
        for key in done:
            for t in self.pending.pop(key):
                if len(self.samples) < MAX_SAMPLES:
                    self.samples.append((now - t) * 1000)


class OutageLink:
    """A connected link that breaks when the outage begins."""

    def __init__(self, link: Link, outage: Outage, latency: Latency | None = None) -> None:
        self._link = link
        self._outage = outage
        self._latency = latency

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, timeout_s: float | None = None
    ) -> None:
        if self._outage.down.is_set():
            raise UplinkError("city-wide network outage")
        await self._link.publish(topic, payload, retain=retain, timeout_s=timeout_s)
        if self._latency is not None:
            self._latency.published(topic, payload)

    async def acks(self) -> AsyncIterator[Ack]:
        acks = aiter(self._link.acks())
        down = asyncio.ensure_future(self._outage.down.wait())
        nxt: asyncio.Future[Ack] | None = None
        try:
            while True:
                nxt = asyncio.ensure_future(anext(acks))
                await asyncio.wait({nxt, down}, return_when=asyncio.FIRST_COMPLETED)
                if not nxt.done():
                    raise UplinkError("city-wide network outage")
                ack, nxt = nxt.result(), None
                if self._latency is not None:
                    self._latency.acked(ack)
                yield ack
        finally:
            down.cancel()
            if nxt is not None:
                nxt.cancel()
                nxt.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Ack]) -> None:
    """Fetch a dropped future's outcome, so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()


@dataclass
class LinkSlot:
    """The session's live MQTT connection, if any, so a power cut can drop it."""

    link: MqttLink | None = None

    async def drop(self) -> None:
        """End the connection as a power loss does: no DISCONNECT, so the broker
        publishes the will."""
        if self.link is not None:
            await self.link.abort()


def outage_connector(
    outage: Outage, latency: Latency | None = None, slot: LinkSlot | None = None
) -> Callable[[UplinkSettings], contextlib.AbstractAsyncContextManager[Link]]:
    @contextlib.asynccontextmanager
    async def connector(settings: UplinkSettings) -> AsyncIterator[Link]:
        if outage.down.is_set():
            raise UplinkError(f"cannot connect to {settings.host}:{settings.port}: network down")
        async with connect(settings) as link:
            if slot is not None:
                slot.link = link
            try:
                yield OutageLink(link, outage, latency)
            finally:
                if slot is not None:
                    slot.link = None

    return connector


@dataclass
class Counts:
    """What a worker reports about its taxis."""

    records: int = 0
    acked: int = 0
    published_bytes: int = 0
    connects: int = 0
    power_cuts: int = 0
    ignition_offs: int = 0
    done: int = 0
    km: float = 0.0


async def power_cut(outbox: Outbox) -> None:
    """Leave the outbox's file as a power cut would: without its clean-close marker (every
    committed transaction is kept, as ``synchronous=FULL`` promises)."""
    db, outbox._db = outbox._db, None
    writer, outbox._writer = outbox._writer, None
    fd, outbox._lock_fd = outbox._lock_fd, None
    if writer is not None:
        await writer.close()
    if db is not None:
        await db.close()
    if fd is not None:
        os.close(fd)


@dataclass
class Session:
    """One life of the taxi's gateway: from power-on to ignition off or a power cut."""

    outbox: Outbox
    uplink: Uplink
    writer: OutboxWriter
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]]
    slot: LinkSlot = field(default_factory=LinkSlot)

    @property
    def online(self) -> bool:
        return self.uplink.connected.is_set()

    async def cut_power(self) -> None:
        """Everything stops at once: the TCP connection drops without DISCONNECT (the
        broker publishes the will), the tasks die, the outbox is left without its
        clean-close marker."""
        await self.slot.drop()
        # The uplink may be handling the broken connection as the cancel arrives, and a
        # task group can swallow a cancel then: ``stop`` ends it in any case (nothing can
        # leave a socket that is shut down, so no goodbye is sent either way).
        self.stop.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await power_cut(self.outbox)


@dataclass
class Taxi:
    index: int
    model: TaxiModel
    settings: UplinkSettings
    clock: SimClock
    outage: Outage
    path: Path
    counts: Counts
    latency: Latency | None = None
    session: Session | None = None
    _acked_base: int = 0
    _bytes_base: int = 0
    _connects_base: int = 0

    async def _open(self) -> Session:
        outbox = await Outbox.open(
            self.path, fleet_id=self.settings.fleet_id, vehicle_id=self.settings.vehicle_id
        )
        sysclock = SystemClock()
        slot = LinkSlot()
        uplink = Uplink(
            self.settings, outbox, connector=outage_connector(self.outage, self.latency, slot)
        )
        writer = OutboxWriter(outbox, sysclock)
        scheduler = Scheduler(sysclock)
        writer.on_deadline = lambda at: scheduler.advance("close", at)

        async def close_job(now: float) -> float:
            closed, next_at = await writer.close_due(now)
            if closed:
                uplink.wake()
            return next_at

        scheduler.add("close", close_job)
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(uplink.run(stop)),
            asyncio.create_task(scheduler.run(stop)),
        ]
        session = Session(outbox, uplink, writer, stop, tasks, slot)
        await self._health(session, "start")
        return session

    def _tally(self, session: Session) -> None:
        c = session.uplink.counters
        self.counts.acked += c.acked_batches - self._acked_base
        self.counts.published_bytes += c.published_bytes - self._bytes_base
        self.counts.connects += c.connects - self._connects_base
        self._acked_base, self._bytes_base = c.acked_batches, c.published_bytes
        self._connects_base = c.connects

    async def _health(self, session: Session, reason: str) -> None:
        c = session.uplink.counters
        stats = await session.outbox.stats(int(time.time() * 1000))
        values: dict[str, int | float | str | bool | None] = {
            HEALTH_REASON: reason,
            AGENT_MODE: "run",
            UPLINK_CONNECTED: session.online,
            OUTBOX_PENDING_BATCHES: stats.pending_batches,
            UPLINK_CONNECTS: c.connects,
            UPLINK_PUBLISHED_BYTES: c.published_bytes,
            UPLINK_ACKED_BATCHES: c.acked_batches,
        }
        t_ms = self.model.truth.start_ms + self.model.t_s * 1000
        await session.writer.store(Records(health=(Health(t_ms, values),)), None)

    async def _write(self, session: Session, until_s: int) -> None:
        km = self.model.km
        chunk = self.model.advance(until_s)
        self.counts.km += self.model.km - km
        if not len(chunk):
            return
        records = Records(
            events=tuple(chunk.events), signals=chunk.series(), gnss=tuple(chunk.fixes)
        )
        await session.writer.store(records, None)
        self.counts.records += len(chunk)
        if chunk.events:
            session.uplink.wake()

    async def _end(self, session: Session, *, clean: bool) -> None:
        self._tally(session)
        if clean:
            await self._health(session, "stop")
            await session.writer.close_batches(force=True)
            session.uplink.wake()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_ACK_WAIT_S):
                    await self._until_acked(session)
            self._tally(session)
            session.stop.set()
            await asyncio.gather(*session.tasks, return_exceptions=True)
            await session.outbox.close()
        else:
            await session.cut_power()
        self.session = None

    async def _until_acked(self, session: Session) -> None:
        while True:
            stats = await session.outbox.stats(int(time.time() * 1000))
            if not stats.pending_batches and not stats.staged_records:
                return
            session.uplink.acked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.uplink.acked.wait(), DONE_POLL_S)

    async def run(self) -> None:
        """Drive to the end of the simulated span, then wait until everything is acked."""
        end = self.clock.end_s
        cuts = self.model.power_cuts(end)
        await asyncio.sleep((self.index % 97) / 97 * FLUSH_S)  # spread the flushes
        last_health = time.monotonic()
        while self.model.t_s < end:
            now = self.clock.now_s()
            if cuts and cuts[0] <= now:
                await self._power_cut(cuts.pop(0))
                continue
            if not self.model.on_duty(now):
                await self._ignition_off(now)
                continue
            if self.session is None:
                self.session = await self._open()
            await self._write(self.session, now)
            self._tally(self.session)
            if time.monotonic() - last_health >= HEALTH_S:
                last_health = time.monotonic()
                await self._health(self.session, "interval")
            if self.model.t_s < end:
                await asyncio.sleep(FLUSH_S)
        if self.session is None:
            self.session = await self._open()
        await self._health(self.session, "stop")
        await self.session.writer.close_batches(force=True)
        self.session.uplink.wake()
        await self._until_acked(self.session)
        await self._end(self.session, clean=True)
        self.counts.done += 1

    async def _power_cut(self, at_s: int) -> None:
        if self.session is not None:
            await self._write(self.session, at_s)
            await self._end(self.session, clean=False)
            self.counts.power_cuts += 1
        reboot = min(self.clock.end_s, at_s + REBOOT_S)
        await self.clock.until(reboot)
        self.model.advance(reboot)  # the taxi drove on; its gateway recorded nothing

    async def _ignition_off(self, now: int) -> None:
        if self.session is not None:
            await self._write(self.session, now)
            await self._end(self.session, clean=True)
            self.counts.ignition_offs += 1
        t = now
        while t < self.clock.end_s and not self.model.on_duty(t):
            t += 60
        await self.clock.until(min(t, self.clock.end_s))
        self.model.advance(min(t, self.clock.end_s))


def settings_for(base: UplinkSettings, fleet: str, vehicle: str) -> UplinkSettings:
    return replace(base, fleet_id=fleet, vehicle_id=vehicle)
