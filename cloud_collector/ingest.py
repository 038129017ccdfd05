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

Steps 1-2 of up to ``ingest_concurrency`` messages run concurrently; steps 3-4 follow in
arrival order (``completion.OrderedCompletion``).

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

from cloud_collector.completion import AckIntent, AckSender, OrderedCompletion
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
from daemon_kit.backoff import Backoff
from daemon_kit.clock import wall_ms
from daemon_kit.logs import bound
from protocol import collector_filters
from protocol.status import Presence

log = logging.getLogger(__name__)


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
        # Full jitter: many collectors (or one after a broker restart) must not reconnect
        # in lockstep.
        backoff = Backoff(self.cfg.reconnect_min_s, self.cfg.reconnect_max_s, random.random)
        while not stop.is_set():
            try:
                await self._session(stop)
                backoff.reset()
            except* (DeliveryError, StoreError) as group:
                log.warning("delivery session ended: %s", group.exceptions[0])
            self.metrics.connected = False
            if stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff.next_delay_s())

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
            completion = OrderedCompletion(
                link,
                acks,
                process=self._process,
                admit=self._admit,
                concurrency=self.cfg.ingest_concurrency,
            )
            await completion.run(stop)
            if stop.is_set() and self.cfg.leave_group_on_stop:
                link.leave()

    def _admit(self, message: Delivered) -> bool:
        """Spend a token of the sender's budget; over budget, the message is dropped."""
        if self._senders.take(sender_of(message.topic), self.monotonic_s()):
            return True
        self._count_drop(DROP_SENDER_BUDGET)
        return False

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
        with bound(
            vehicle=f"{header.fleet_id}/{header.vehicle_id}", epoch=header.epoch, seq=header.seq
        ):
            return await self._store_bound(outcome, size, received_ms)

    async def _store_bound(self, outcome: Accepted, size: int, received_ms: int) -> AckIntent:
        """Store one batch; every line logged meanwhile names its vehicle, epoch and seq."""
        channel = outcome.channel.value
        header = outcome.batch.header
        started = time.perf_counter()
        result = await self.store.ingest(
            outcome.batch, topic_channel=channel, payload_bytes=size, received_ms=received_ms
        )
        log.debug(
            "batch %s (%d records)", "stored" if result.new else "duplicate", header.counts.total
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
