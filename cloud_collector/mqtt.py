"""The one adapter around aiomqtt/paho: connect options, manual acks, errors.

aiomqtt 2.x acknowledges a QoS 1 message as soon as it reaches its in-process queue, so a
crash loses everything queued. We switch paho to manual acks (aiomqtt issue #345; aiomqtt
2.5 exposes no public switch, only the underlying paho client as ``_client``) and send the
PUBACK ourselves after the commit. This module is the only place that touches ``_client``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Final

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_collector.config import MqttConfig

MqttError: Final = aiomqtt.MqttError


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
        password=cfg.password,
        tls_params=tls,
    )
    client._client.manual_ack_set(True)  # the PUBACK waits for our commit
    return client


def puback(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Acknowledge ``message`` to the broker; call only once its data is committed.

    A failure means the connection is gone; the broker then redelivers the message on the
    next connect of our persistent session, and the store deduplicates it.
    """
    rc = client._client.ack(message.mid, message.qos)
    if rc != paho.MQTT_ERR_SUCCESS:
        raise aiomqtt.MqttCodeError(rc, "could not send PUBACK")


def next_nowait(client: aiomqtt.Client) -> aiomqtt.Message | None:
    """The next received message if one is queued already, else None.

    aiomqtt's message iterator spends a task and an ``asyncio.wait`` on every message,
    even when its queue is full; under a flood the collector drains that queue here at
    a fraction of the cost, and waits through the iterator only when it is empty.
    """
    try:
        message: aiomqtt.Message = client._queue.get_nowait()
    except asyncio.QueueEmpty:
        return None
    return message
