"""The subscriber: receive, validate, commit, then acknowledge (broker and end to end).

It is written against two ports: ``delivery.Delivery`` for the message transport (MQTT
through ``mqtt.MqttDelivery`` in production) and ``ingest_store.IngestStore`` for the
store's ledger calls.

Delivery, in the order the code enforces it for every message:

1. ``validate.classify`` decides: a batch, a presence update, or a rejection.
2. One store transaction: the batch (receipt with conflict-ignore, data only if new), the
   quarantine row, or the presence row.
3. The MQTT PUBACK, only now, and in arrival order: a crash before it makes the broker
   redeliver the message to our persistent session, and step 2 deduplicates it.
4. The end-to-end ack on ``fleet/<fleet>/<vehicle>/ack`` with the highest contiguous seq of
   that vehicle and epoch, also for duplicates (the agent evidently missed the last ack)
   and for quarantined batches whose identity was readable (PROTOCOL.md 3.2 and 6).

Before step 1, each sender (the topic's vehicle id) spends a token of its budget
(``intake.SenderBudgets``); a message beyond it is counted and dropped before any
decoding or database work, and a rejected payload spends a token of a second, smaller
junk budget before it may be written to quarantine. A dropped batch is not acknowledged
end to end, so an honest agent sends it again; a flood from one sender drains at
decoding speed instead of one transaction per message, and everyone else's batches keep
flowing. Quarantine keeps a bounded prefix per payload and a daily quota per sender
(``store.quarantine``); a quarantined retained message is cleared at the broker.

Vehicle clocks are not trusted past the collector's: a retained status counts at most as
of its receive time, and a message whose times run past its receive time by more than
``clock_skew_ms`` is recorded (``Store.note_clock_ahead``) for the ``clock_ahead`` alert.

Steps 1-2 of up to ``ingest_concurrency`` messages run concurrently (decoding overlaps the
store's I/O); a single completer awaits them in arrival order for steps 3-4. The ack
sender publishes off that path and coalesces acks per (vehicle, epoch), never sending a
lower seq than it sent before.

A store failure is not the taxi's fault, nor is a transport failure (``DeliveryError``):
nothing more is acknowledged, the session is dropped and re-established after a backoff,
and the broker redelivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cloud_collector.config import IntakeConfig, MqttConfig, QuarantineConfig
from cloud_collector.delivery import Delivered, Delivery, Link
from cloud_collector.errors import DeliveryError, StoreError
from cloud_collector.ingest_store import IdentifiedQuarantine, IngestStore
from cloud_collector.intake import DROP_JUNK_BUDGET, DROP_SENDER_BUDGET, SenderBudgets
from cloud_collector.metrics import IngestMetrics
from cloud_collector.store.base import QUARANTINE_OVER_CAP, QuarantineLimits
from cloud_collector.validate import (
    Accepted,
    PresenceUpdate,
    Rejected,
    classify,
    sender_of,
    stamped_ms,
)
from protocol import Ack, ack_topic, collector_filters, encode_ack
from protocol.status import Presence

log = logging.getLogger(__name__)

# (vehicle, epoch) pairs whose last sent ack seq is remembered (to never send a lower one).
MAX_REMEMBERED_ACKS: Final = 100_000


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class AckIntent:
    """After this message's PUBACK: tell ``vehicle`` that 1..seq of ``epoch`` are stored."""

    fleet: str
    vehicle: str
    epoch: int
    seq: int


class AckSender:
    """Publishes end-to-end acks, coalesced per (vehicle, epoch), off the commit path."""

    def __init__(
        self,
        link: Link,
        metrics: IngestMetrics,
        clock_ms: Callable[[], int],
        sent: OrderedDict[tuple[str, int], int],
        max_pending: int,
    ) -> None:
        self.link = link
        self.metrics = metrics
        self.clock_ms = clock_ms
        self.sent = sent
        self.max_pending = max_pending
        self.pending: dict[tuple[str, str, int], int] = {}
        self.wake = asyncio.Event()
        self.room = asyncio.Event()
        self.closing = False

    async def offer(self, intent: AckIntent) -> None:
        # Bounded: with many vehicles and a slow broker, the completer waits here.
        while len(self.pending) >= self.max_pending:
            self.room.clear()
            await self.room.wait()
        key = (intent.fleet, intent.vehicle, intent.epoch)
        self.pending[key] = max(self.pending.get(key, 0), intent.seq)
        self.wake.set()

    def close(self) -> None:
        self.closing = True
        self.wake.set()

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.pending = self.pending, {}
            self.room.set()
            for (fleet, vehicle, epoch), seq in batch.items():
                await self._send(fleet, vehicle, epoch, seq)
            if self.closing and not self.pending:
                return

    async def _send(self, fleet: str, vehicle: str, epoch: int, seq: int) -> None:
        key = (vehicle, epoch)
        # Concurrent transactions may finish out of order: never go below what we sent.
        seq = max(seq, self.sent.get(key, 0))
        self.sent[key] = seq
        self.sent.move_to_end(key)
        while len(self.sent) > MAX_REMEMBERED_ACKS:
            self.sent.popitem(last=False)
        ack = Ack(vehicle_id=vehicle, epoch=epoch, seq=seq, time_ms=self.clock_ms())
        await self.link.publish(ack_topic(fleet, vehicle), encode_ack(ack), qos=1)
        self.metrics.acks_sent += 1


# A message and its processing task; no task: dropped before any work, PUBACK only.
_Inflight = asyncio.Queue[tuple[Delivered, "asyncio.Task[AckIntent | None] | None"] | None]


def _rate_limited(n: int) -> bool:
    """Log the 1st, 2nd, 4th, 8th... occurrence only."""
    return n & (n - 1) == 0


class Ingestor:
    """Owns the delivery session; ``run`` returns once ``stop`` is set."""

    def __init__(
        self,
        cfg: MqttConfig,
        store: IngestStore,
        metrics: IngestMetrics,
        *,
        delivery: Delivery,
        clock_ms: Callable[[], int] = wall_ms,
        intake: IntakeConfig | None = None,
        quarantine: QuarantineConfig | None = None,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.delivery = delivery
        self.store = store
        self.metrics = metrics
        self.clock_ms = clock_ms
        self.monotonic_s = monotonic_s
        self.intake = intake if intake is not None else IntakeConfig()
        q = quarantine if quarantine is not None else QuarantineConfig()
        self.clear_retained = q.clear_retained
        self.limits = QuarantineLimits(
            keep_bytes=q.keep_bytes,
            keep_identified_bytes=q.keep_identified_bytes,
            max_per_sender_day=q.max_per_sender_day,
            max_bytes_per_sender_day=q.max_bytes_per_sender_day,
        )
        self._senders = SenderBudgets(self.intake.sender_rate_per_s, self.intake.sender_burst)
        self._junk = SenderBudgets(self.intake.junk_rate_per_s, self.intake.junk_burst)
        self._link: Link | None = None
        self._acks_sent: OrderedDict[tuple[str, int], int] = OrderedDict()

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, subscribe and consume until ``stop``; reconnect with full-jitter backoff."""
        failures = 0
        while not stop.is_set():
            failed = False
            try:
                await self._session(stop)
            except* (DeliveryError, StoreError) as group:
                failed = True
                log.warning("delivery session ended: %s", group.exceptions[0])
            self.metrics.connected = False
            failures = failures + 1 if failed else 0
            if stop.is_set():
                break
            # Full jitter: many collectors (or one after a broker restart) must not
            # reconnect in lockstep.
            cap = min(self.cfg.reconnect_max_s, self.cfg.reconnect_min_s * 2 ** min(failures, 16))
            delay = random.uniform(self.cfg.reconnect_min_s, max(cap, self.cfg.reconnect_min_s))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _session(self, stop: asyncio.Event) -> None:
        # The port subscribes on every connect, even with a persistent session:
        # mosquitto 2.0.11 forgets durable $share subscriptions when it restarts.
        async with self.delivery.connect(collector_filters(self.cfg.group)) as link:
            self._link = link
            self.metrics.connected = True
            self.metrics.connects += 1
            log.info("mqtt connected and subscribed")
            acks = AckSender(
                link, self.metrics, self.clock_ms, self._acks_sent, self.cfg.receive_maximum
            )
            inflight: _Inflight = asyncio.Queue(maxsize=self.cfg.ingest_concurrency)
            async with asyncio.TaskGroup() as tg:
                sender = tg.create_task(acks.run(), name="ack-sender")
                completer = tg.create_task(self._complete(inflight, acks))
                await self._receive(link, stop, tg, inflight)
                await completer
                acks.close()
                await sender

    async def _receive(
        self,
        link: Link,
        stop: asyncio.Event,
        tg: asyncio.TaskGroup,
        inflight: _Inflight,
    ) -> None:
        """Hand messages to processing tasks until ``stop``; then tell the completer."""
        messages = aiter(link.messages())
        stopper = asyncio.ensure_future(stop.wait())
        nxt: asyncio.Future[Delivered] | None = None
        try:
            while not stop.is_set():
                queued = link.poll()
                if queued is not None:
                    await self._dispatch(queued, tg, inflight)
                    continue
                nxt = asyncio.ensure_future(anext(messages))
                done, _ = await asyncio.wait((nxt, stopper), return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    with contextlib.suppress(asyncio.CancelledError, DeliveryError):
                        await nxt
                    break
                await self._dispatch(nxt.result(), tg, inflight)
        finally:
            # Cancelled from outside (a failed commit ends the session): a pending
            # receive must not outlive its link.
            for pending in (stopper, nxt):
                if pending is not None:
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError, DeliveryError):
                        await pending
        await inflight.put(None)

    async def _dispatch(
        self, message: Delivered, tg: asyncio.TaskGroup, inflight: _Inflight
    ) -> None:
        """Start processing ``message``, or drop it when its sender is over budget."""
        if not self._senders.take(sender_of(message.topic), self.monotonic_s()):
            self._count_drop(DROP_SENDER_BUDGET)
            await inflight.put((message, None))
            return
        # put() waits while ingest_concurrency messages are in progress.
        await inflight.put((message, tg.create_task(self._process(message))))

    async def _complete(self, inflight: _Inflight, acks: AckSender) -> None:
        """PUBACK and end-to-end ack, strictly in arrival order, each after its commit."""
        while (item := await inflight.get()) is not None:
            message, task = item
            # raises StoreError: nothing from here on is acknowledged
            intent = None if task is None else await task
            # raises DeliveryError: the broker redelivers, the store deduplicates
            message.ack()
            if intent is not None and intent.seq >= 1:
                # seq 0 ("nothing stored yet") lets the agent delete nothing: not sent.
                await acks.offer(intent)

    async def _process(self, message: Delivered) -> AckIntent | None:
        """Validate and store one message; what to acknowledge end to end, if anything."""
        data = message.payload
        received_ms = self.clock_ms()
        topic = message.topic
        outcome = classify(topic, data)
        try:
            if isinstance(outcome, Accepted):
                return await self._store_batch(outcome, len(data), received_ms)
            if isinstance(outcome, Rejected):
                if not self._junk.take(sender_of(topic), self.monotonic_s()):
                    self._count_drop(DROP_JUNK_BUDGET)
                    return None
                intent = await self._quarantine(outcome, topic, data, received_ms, message.retained)
                if message.retained and self.clear_retained:
                    await self._clear_retained(topic)
                return intent
            await self._presence(outcome, message.retained, received_ms)
            return None
        except StoreError:
            self.metrics.store_errors += 1
            raise

    async def _store_batch(self, outcome: Accepted, size: int, received_ms: int) -> AckIntent:
        channel = outcome.channel.value
        header = outcome.batch.header
        self.metrics.received[channel] += 1
        started = time.perf_counter()
        result = await self.store.ingest(
            outcome.batch, topic_channel=channel, payload_bytes=size, received_ms=received_ms
        )
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        if result.new:
            self.metrics.stored[channel] += 1
            self.metrics.records += header.counts.total
            self.metrics.payload_bytes += size
            lag_ms = max(0, self.clock_ms() - header.sent_ms)
            self.metrics.ack_lag_ms = lag_ms
            self.metrics.ack_lag_seconds.observe(lag_ms / 1000)
        else:
            self.metrics.duplicates[channel] += 1
        await self._check_clock(
            header.fleet_id, header.vehicle_id, stamped_ms(outcome.batch), received_ms
        )
        return AckIntent(header.fleet_id, header.vehicle_id, header.epoch, result.contiguous_seq)

    async def _check_clock(self, fleet: str, vehicle: str, stamped: int, received_ms: int) -> None:
        """Record a message stamped past our clock by more than the allowed skew."""
        ahead = stamped - received_ms
        if ahead <= self.intake.clock_skew_ms:
            return
        self.metrics.clock_ahead += 1
        if _rate_limited(self.metrics.clock_ahead):
            log.warning(
                "vehicle %s/%s: times %d ms ahead of the collector's clock (%d so far)",
                fleet, vehicle, ahead, self.metrics.clock_ahead,
            )  # fmt: skip
        await self.store.note_clock_ahead(
            fleet=fleet, vehicle=vehicle, ahead_ms=ahead, received_ms=received_ms
        )

    def _count_drop(self, cause: str) -> None:
        self.metrics.dropped[cause] += 1
        n = self.metrics.dropped[cause]
        if _rate_limited(n):
            log.warning("dropped before storing: %s (%d so far)", cause, n)

    async def _clear_retained(self, topic: str) -> None:
        """An empty retained publish removes the message at the broker, so it is not
        delivered again at every subscribe. QoS 0: a broker whose ACL refuses it drops
        it silently (the store still recognises the payload by its hash)."""
        link = self._link
        if link is None:
            return
        with contextlib.suppress(DeliveryError):
            await link.publish(topic, b"", qos=0, retain=True)
            self.metrics.retained_cleared += 1

    async def _quarantine(
        self, outcome: Rejected, topic: str, data: bytes, received_ms: int, retained: bool
    ) -> AckIntent | None:
        # Acknowledged to the broker like any stored message (by the completer): redelivering
        # garbage forever would stall the stream; the raw bytes are kept for an operator.
        ident = outcome.identity
        intent: AckIntent | None = None
        if ident is not None and isinstance(self.store, IdentifiedQuarantine):
            result = await self.store.quarantine_batch(
                identity=ident,
                topic=topic,
                payload=data,
                reason=outcome.reason,
                received_ms=received_ms,
                limits=self.limits,
            )
            intent = AckIntent(ident.fleet_id, ident.vehicle_id, ident.epoch, result.contiguous_seq)
        else:
            done = await self.store.quarantine(
                topic=topic,
                payload=data,
                reason=outcome.reason,
                received_ms=received_ms,
                fleet=outcome.fleet,
                vehicle=outcome.vehicle,
                limits=self.limits,
                retained=retained,
            )
            self.metrics.quarantine_outcomes[done] += 1
            if done == QUARANTINE_OVER_CAP and _rate_limited(
                self.metrics.quarantine_outcomes[done]
            ):
                log.warning("quarantine quota of sender %r used up today", sender_of(topic))
        self.metrics.quarantined[outcome.reason] += 1
        n = self.metrics.quarantined[outcome.reason]
        if _rate_limited(n):
            log.warning("quarantined payloads: %s (%d so far)", outcome.reason, n)
        return intent

    async def _presence(self, outcome: PresenceUpdate, retained: bool, received_ms: int) -> None:
        status = outcome.status
        if status is None:
            self.metrics.presence["cleared"] += 1
            return
        # Live messages: our receive time is the truth (a will's own ``t`` is the connect
        # time). Retained ones arrive at subscribe time, long after the fact: the agent's
        # ``t`` is the best estimate there is, but never later than our receive time (a
        # clock running ahead would pin the presence in the future).
        await self.store.set_presence(
            fleet=outcome.fleet,
            vehicle=outcome.vehicle,
            online=status.state is Presence.ONLINE,
            time_ms=min(status.time_ms, received_ms) if retained else received_ms,
        )
        self.metrics.presence[status.state.value] += 1
        await self._check_clock(outcome.fleet, outcome.vehicle, status.time_ms, received_ms)
