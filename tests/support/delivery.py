"""An in-memory broker implementing the collector's delivery port (``delivery.Delivery``).

One persistent QoS 1 session, as the collector's MQTT session: messages are delivered in
the order they were sent, at most ``receive_maximum`` unacknowledged at once; whatever was
delivered and not acknowledged when a session ends is delivered again, first and in order,
on the next connect. ``journal`` (shared with ``FakeLedger``) records PUBACKs and
publishes in the order they happened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

from cloud_collector.delivery import Delivered, Link
from cloud_collector.errors import DeliveryError


@dataclass(frozen=True, slots=True)
class Sent:
    topic: str
    payload: bytes
    retained: bool = False


@dataclass(frozen=True, slots=True)
class Published:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class FakeMessage:
    def __init__(self, link: FakeLink, sent: Sent) -> None:
        self._link = link
        self.sent = sent

    @property
    def topic(self) -> str:
        return self.sent.topic

    @property
    def payload(self) -> bytes:
        return self.sent.payload

    @property
    def retained(self) -> bool:
        return self.sent.retained

    def ack(self) -> None:
        self._link.broker.puback(self)


class FakeLink:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.closed = False
        self.left = False

    def leave(self) -> None:
        self.left = True
        self.broker.journal.append(("leave",))

    def poll(self) -> Delivered | None:
        return None if self.closed else self.broker.deliver(self)

    def messages(self) -> AsyncIterator[Delivered]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Delivered]:
        while True:
            if self.closed:
                raise DeliveryError("fake broker: connection lost")
            message = self.broker.deliver(self)
            if message is not None:
                yield message
                continue
            self.broker.changed.clear()
            await self.broker.changed.wait()

    async def publish(
        self, topic: str, payload: bytes, *, qos: Literal[0, 1] = 1, retain: bool = False
    ) -> None:
        await asyncio.sleep(0)  # a real publish yields while the broker answers
        if self.closed or self.broker.fail_publish:
            raise DeliveryError("fake broker: publish failed")
        self.broker.published.append(Published(topic, payload, qos, retain))
        self.broker.journal.append(("publish", topic, payload))


class FakeBroker:
    """``delivery.Delivery`` in memory; see the module doc."""

    def __init__(self, *, receive_maximum: int = 256, journal: list[tuple[object, ...]]) -> None:
        self.receive_maximum = receive_maximum
        self.journal = journal
        self.queued: deque[Sent] = deque()
        self.inflight: list[FakeMessage] = []  # delivered, not acknowledged, in order
        self.acked: list[Sent] = []
        self.published: list[Published] = []
        self.connects = 0
        self.refusals = 0  # connects still to refuse
        self.fail_publish = False
        self.fail_next_ack = False
        self.link: FakeLink | None = None
        self.changed = asyncio.Event()

    def send(self, topic: str, payload: bytes, *, retained: bool = False) -> None:
        self.queued.append(Sent(topic, payload, retained))
        self.changed.set()

    def drop(self) -> None:
        """The connection breaks (the collector sees it on its next receive or ack)."""
        if self.link is not None:
            self.link.closed = True
        self.changed.set()

    def deliver(self, link: FakeLink) -> FakeMessage | None:
        if not self.queued or len(self.inflight) >= self.receive_maximum:
            return None
        message = FakeMessage(link, self.queued.popleft())
        self.inflight.append(message)
        return message

    def puback(self, message: FakeMessage) -> None:
        if message._link.closed or message not in self.inflight:
            raise DeliveryError("fake broker: PUBACK on a closed session")
        if self.fail_next_ack:
            self.fail_next_ack = False
            self.drop()
            raise DeliveryError("fake broker: PUBACK failed")
        self.inflight.remove(message)
        self.acked.append(message.sent)
        self.journal.append(("puback", message.topic, message.payload))
        self.changed.set()

    @contextlib.asynccontextmanager
    async def connect(self, filters: Sequence[str]) -> AsyncIterator[Link]:
        await asyncio.sleep(0)
        if self.refusals > 0:
            self.refusals -= 1
            raise DeliveryError("fake broker: connection refused")
        # The persistent session: what the last one did not acknowledge comes first.
        self.queued.extendleft(m.sent for m in reversed(self.inflight))
        self.inflight.clear()
        link = FakeLink(self)
        self.link = link
        self.connects += 1
        self.journal.append(("connect", tuple(filters)))
        try:
            yield link
        finally:
            link.closed = True
            self.link = None
