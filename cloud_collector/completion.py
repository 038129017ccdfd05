"""Ordered completion: messages processed concurrently, acknowledged in arrival order.

Up to ``concurrency`` messages are validated and stored at once (decoding overlaps the
store's I/O); a single completer awaits them in arrival order and only then sends each
one's broker acknowledgement and hands its end-to-end ack to the ack sender. The ack
sender publishes off that path and coalesces acks per (vehicle, epoch), never sending a
lower seq than it sent before.

A processing task that raises (``StoreError``) or a transport failure (``DeliveryError``)
ends the session: nothing after it is acknowledged, and the broker redelivers it all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

from cloud_collector.delivery import Delivered, Link
from cloud_collector.errors import DeliveryError
from cloud_collector.metrics import IngestMetrics
from protocol import Ack, ack_topic, encode_ack

# (vehicle, epoch) pairs whose last sent ack seq is remembered (to never send a lower one).
MAX_REMEMBERED_ACKS: Final = 100_000


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

# Validates and stores one message; returns what to acknowledge end to end, if anything.
Process = Callable[[Delivered], Coroutine[Any, Any, "AckIntent | None"]]


class OrderedCompletion:
    """One session's receive loop, processing tasks, completer and ack sender."""

    def __init__(
        self,
        link: Link,
        acks: AckSender,
        *,
        process: Process,
        admit: Callable[[Delivered], bool],
        concurrency: int,
    ) -> None:
        self.link = link
        self.acks = acks
        self.process = process
        self.admit = admit
        self.concurrency = concurrency

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: then what is in progress is completed and acknowledged."""
        inflight: _Inflight = asyncio.Queue(maxsize=self.concurrency)
        async with asyncio.TaskGroup() as tg:
            sender = tg.create_task(self.acks.run(), name="ack-sender")
            completer = tg.create_task(self._complete(inflight))
            await self._receive(stop, tg, inflight)
            await completer
            self.acks.close()
            await sender

    async def _receive(
        self, stop: asyncio.Event, tg: asyncio.TaskGroup, inflight: _Inflight
    ) -> None:
        """Hand messages to processing tasks until ``stop``; then tell the completer."""
        link = self.link
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
        """Start processing ``message``, or only acknowledge it when it is not admitted."""
        if not self.admit(message):
            await inflight.put((message, None))
            return
        # put() waits while ``concurrency`` messages are in progress.
        await inflight.put((message, tg.create_task(self.process(message))))

    async def _complete(self, inflight: _Inflight) -> None:
        """PUBACK and end-to-end ack, strictly in arrival order, each after its commit."""
        while (item := await inflight.get()) is not None:
            message, task = item
            # raises StoreError: nothing from here on is acknowledged
            intent = None if task is None else await task
            # raises DeliveryError: the broker redelivers, the store deduplicates
            message.ack()
            if intent is not None and intent.seq >= 1:
                # seq 0 ("nothing stored yet") lets the agent delete nothing: not sent.
                await self.acks.offer(intent)
