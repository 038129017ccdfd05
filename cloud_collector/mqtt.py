"""The one adapter around aiomqtt/paho: the delivery port (``delivery``) over MQTT 5.

aiomqtt 2.x acknowledges a QoS 1 message as soon as it reaches its in-process queue, so a
crash loses everything queued. We switch paho to manual acks (aiomqtt issue #345; aiomqtt
2.5 exposes no public switch, only the underlying paho client as ``_client``) and send the
PUBACK ourselves after the commit. This module is the only place that touches ``_client``.

Every client failure (aiomqtt's ``MqttError`` family, and ``OSError``, which covers socket,
TLS and paho's websocket errors) leaves this module as ``DeliveryError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Final, Literal

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_collector.config import MqttConfig
from cloud_collector.delivery import Delivered, Link
from cloud_collector.errors import DeliveryError

# ssl.SSLError and paho's WebsocketConnectionError are OSErrors.
_CLIENT_ERRORS: Final = (aiomqtt.MqttError, OSError)
# How long a clean stop waits for the broker to close the connection after DISCONNECT.
DISCONNECT_TIMEOUT_S: Final = 10.0


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except _CLIENT_ERRORS as exc:
        raise DeliveryError(f"mqtt {what} failed: {exc or type(exc).__name__}") from exc


def make_client(cfg: MqttConfig) -> aiomqtt.Client:
    """A client for a persistent MQTT 5 session under the configured stable client id.

    A collector process holds exactly one such client. The shipped broker replaces every
    client id with the certificate's CN, so a second client on the same certificate (say,
    one for acks) would get the same id and the two would displace each other in a loop.
    """
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    # The broker keeps our session, subscriptions and unacknowledged messages this long.
    props.SessionExpiryInterval = cfg.session_expiry_s
    # At most this many unacknowledged deliveries in flight to us: with acks after commit,
    # this is what bounds aiomqtt's (otherwise unbounded) incoming queue.
    props.ReceiveMaximum = cfg.receive_maximum
    tls: aiomqtt.TLSParameters | None = None
    if cfg.tls_ca is not None or cfg.tls_cert is not None:
        tls = aiomqtt.TLSParameters(
            ca_certs=cfg.tls_ca,
            certfile=cfg.tls_cert,
            keyfile=cfg.tls_key,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    client = aiomqtt.Client(
        cfg.host,
        cfg.port,
        identifier=cfg.client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=props,
        keepalive=cfg.keepalive_s,
        timeout=10,
        username=cfg.username,
        password=None if cfg.password is None else cfg.password.get_secret_value(),
        tls_params=tls,
    )
    client._client.manual_ack_set(True)  # the PUBACK waits for our commit
    return client


class _Received:
    """A received message; ``ack`` sends its PUBACK through paho's manual ack."""

    __slots__ = ("_mid", "_paho", "_qos", "payload", "retained", "topic")

    def __init__(self, client: paho.Client, message: aiomqtt.Message) -> None:
        self._paho = client
        self._mid = message.mid
        self._qos = message.qos
        self.topic = message.topic.value
        data = message.payload
        self.payload = bytes(data) if isinstance(data, bytes | bytearray) else b""
        self.retained = bool(message.retain)

    def ack(self) -> None:
        # A failure means the connection is gone; the broker then redelivers the message
        # on the next connect of our persistent session, and the store deduplicates it.
        with _translated("PUBACK"):
            rc = self._paho.ack(self._mid, self._qos)
        if rc != paho.MQTT_ERR_SUCCESS:
            raise DeliveryError(f"mqtt PUBACK failed: {paho.error_string(rc)}")


class _Messages:
    """aiomqtt's message iterator, its errors translated."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._paho = client._client
        self._inner = aiter(client.messages)

    def __aiter__(self) -> _Messages:
        return self

    async def __anext__(self) -> Delivered:
        with _translated("receive"):
            message = await anext(self._inner)
        return _Received(self._paho, message)


class _MqttLink:
    """One connected session (``delivery.Link``)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client
        self.leaving = False

    def leave(self) -> None:
        self.leaving = True

    def messages(self) -> AsyncIterator[Delivered]:
        return _Messages(self._client)

    def poll(self) -> Delivered | None:
        # aiomqtt's message iterator spends a task and an ``asyncio.wait`` on every
        # message, even when its queue is full; under a flood the collector drains that
        # queue here at a fraction of the cost, and waits only when it is empty.
        try:
            message: aiomqtt.Message = self._client._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        return _Received(self._client._client, message)

    async def publish(
        self, topic: str, payload: bytes, *, qos: Literal[0, 1] = 1, retain: bool = False
    ) -> None:
        with _translated("publish"):
            await self._client.publish(topic, payload, qos=qos, retain=retain)


class MqttDelivery:
    """``delivery.Delivery`` over one persistent MQTT 5 session (see ``make_client``)."""

    def __init__(self, cfg: MqttConfig) -> None:
        self.cfg = cfg

    @contextlib.asynccontextmanager
    async def connect(self, filters: Sequence[str]) -> AsyncIterator[Link]:
        with _translated("connect"):
            client = make_client(self.cfg)
            await client.__aenter__()
        try:
            with _translated("subscribe"):
                for flt in filters:
                    await client.subscribe(flt, qos=1)
            link = _MqttLink(client)
            yield link
        except BaseException:
            # The failure that ended the session is the one to report, not a second
            # one from disconnecting a connection that is likely gone already.
            with contextlib.suppress(*_CLIENT_ERRORS):
                await client.__aexit__(None, None, None)
            raise
        with _translated("disconnect"):
            if link.leaving:
                await _end_session(client)
            await client.__aexit__(None, None, None)


async def _end_session(client: aiomqtt.Client) -> None:
    """MQTT 5 DISCONNECT with Session Expiry Interval 0: the broker discards the session
    and its shared subscriptions now instead of queueing the group's messages for it
    until ``session_expiry_s`` runs out. aiomqtt's own disconnect sends no properties,
    so the DISCONNECT goes through paho; aiomqtt's exit then finds it done."""
    props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    rc = client._client.disconnect(properties=props)
    if rc != paho.MQTT_ERR_SUCCESS:
        raise DeliveryError(f"mqtt disconnect failed: {paho.error_string(rc)}")
    await asyncio.wait_for(asyncio.shield(client._disconnected), DISCONNECT_TIMEOUT_S)
