"""The delivery port: what the ingest needs from the message transport.

The ingest is written against these types only; ``cloud_collector.mqtt`` implements them
with aiomqtt, and tests use an in-memory broker. Every failure of the transport surfaces
as ``errors.DeliveryError``, nothing of the client library's own.

Guarantees an implementation gives (the ingest's delivery rules rest on them):

* At-least-once, in order: messages of one session arrive in the order the broker sent
  them; a message whose ``ack`` was not called before its session ended is delivered
  again in a later session (a persistent session on the broker).
* ``ack`` is the broker acknowledgement (the MQTT PUBACK), and it is sent only when
  called: never on receipt.
* ``publish`` returns once the broker has the message (QoS 1) or has been handed it
  (QoS 0).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Literal, Protocol


class Delivered(Protocol):
    """One received message and its acknowledgement handle."""

    @property
    def topic(self) -> str: ...

    @property
    def payload(self) -> bytes: ...

    @property
    def retained(self) -> bool:
        """Sent by the broker from its retained store (at subscribe time), not live."""
        ...

    def ack(self) -> None:
        """Acknowledge to the broker; call once this message's data is committed.

        Raises ``DeliveryError`` when the session is known to be gone. An ack lost with
        its connection is not an error either way: the broker delivers the message again
        in the next session, and the store deduplicates it."""
        ...


class Link(Protocol):
    """One connected, subscribed session."""

    def messages(self) -> AsyncIterator[Delivered]:
        """The received messages; raises ``DeliveryError`` when the connection drops."""
        ...

    def poll(self) -> Delivered | None:
        """A message that has arrived already, or None: lets a consumer drain a full
        queue without paying for a wait per message."""
        ...

    async def publish(
        self, topic: str, payload: bytes, *, qos: Literal[0, 1] = 1, retain: bool = False
    ) -> None:
        """Raises ``DeliveryError`` when the broker cannot be given the message."""
        ...

    def leave(self) -> None:
        """A clean stop: when ``connect`` is left, end the session at the broker too, so
        that no share of the group's messages waits for a member that is gone (the other
        members get them). Without it a session outlives its connection, and its
        unacknowledged messages are delivered again when it returns."""
        ...


class Delivery(Protocol):
    """Connects sessions: entering ``connect`` subscribes to ``filters`` (on every
    connect, even with a persistent session); leaving it disconnects."""

    def connect(self, filters: Sequence[str]) -> AbstractAsyncContextManager[Link]:
        """Raises ``DeliveryError`` when the broker cannot be reached or refuses us."""
        ...
