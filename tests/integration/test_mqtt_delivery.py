"""The MQTT adapter of the delivery port against a real mosquitto: what it delivers, and
that every client failure leaves it as ``DeliveryError`` (nothing of aiomqtt's own)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiomqtt
import pytest

from cloud_collector.config import MqttConfig
from cloud_collector.delivery import Delivered
from cloud_collector.errors import DeliveryError
from cloud_collector.mqtt import MqttDelivery
from harness.mosquitto import MosquittoHarness, free_port
from protocol import collector_filters

pytestmark = pytest.mark.integration

SYSTEM_CAS = Path("/etc/ssl/certs/ca-certificates.crt")


def _cfg(port: int, **kw: object) -> MqttConfig:
    return MqttConfig.model_validate({"port": port, "group": "t", "client_id": "d-1", **kw})


async def _publish(port: int, topic: str, payload: bytes, *, retain: bool = False) -> None:
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="sender", protocol=aiomqtt.ProtocolVersion.V5
    ) as sender:
        await sender.publish(topic, payload, qos=1, retain=retain)


async def test_nothing_listening_is_a_delivery_error() -> None:
    delivery = MqttDelivery(_cfg(free_port()))
    async with asyncio.timeout(20):
        with pytest.raises(DeliveryError, match="mqtt connect failed"):
            async with delivery.connect(collector_filters("t")):
                pytest.fail("connected to nothing")


@pytest.mark.skipif(not SYSTEM_CAS.exists(), reason="no system CA bundle")
async def test_tls_to_a_plain_listener_is_a_delivery_error(broker: MosquittoHarness) -> None:
    delivery = MqttDelivery(_cfg(broker.port, tls_ca=str(SYSTEM_CAS)))
    async with asyncio.timeout(30):
        with pytest.raises(DeliveryError, match="mqtt connect failed"):
            async with delivery.connect(collector_filters("t")):
                pytest.fail("a TLS session with a plain listener")


async def _session_until_the_broker_dies(delivery: MqttDelivery, broker: MosquittoHarness) -> None:
    async with delivery.connect(collector_filters("t")) as link:
        messages = aiter(link.messages())
        retained = await anext(messages)
        assert (retained.topic, retained.payload, retained.retained) == (
            "fleet/f/v1/status", b"retained", True,
        )  # fmt: skip
        retained.ack()
        await _publish(broker.port, "fleet/f/v1/batch", b"live")
        live: Delivered | None = link.poll() or await anext(messages)
        assert live is not None
        assert (live.topic, live.payload, live.retained) == ("fleet/f/v1/batch", b"live", False)
        await link.publish("fleet/f/v1/ack", b"ack")
        broker.kill()
        with pytest.raises(DeliveryError, match="receive"):
            await anext(messages)
        # paho queues a PUBACK on a dead connection without a word; lost with it, the
        # broker delivers the message again. Only DeliveryError may leave.
        with contextlib.suppress(DeliveryError):
            live.ack()
        with pytest.raises(DeliveryError, match="publish"):
            await link.publish("fleet/f/v1/ack", b"ack")
        raise DeliveryError("the session ends with the failure above")


async def test_messages_acks_publishes_and_a_killed_broker(broker: MosquittoHarness) -> None:
    delivery = MqttDelivery(_cfg(broker.port))
    async with asyncio.timeout(30):
        await _publish(broker.port, "fleet/f/v1/status", b"retained", retain=True)
        # The failure that ended a session is what leaves it, not one from disconnecting.
        with pytest.raises(DeliveryError, match="the session ends"):
            await _session_until_the_broker_dies(delivery, broker)


async def test_an_unacknowledged_message_is_delivered_again(broker: MosquittoHarness) -> None:
    delivery = MqttDelivery(_cfg(broker.port))
    async with asyncio.timeout(30):
        async with delivery.connect(collector_filters("t")) as link:
            await _publish(broker.port, "fleet/f/v2/batch", b"once")
            first = await anext(aiter(link.messages()))
            assert first.payload == b"once"  # not acknowledged
        async with delivery.connect(collector_filters("t")) as link:
            again = await anext(aiter(link.messages()))
            assert again.payload == b"once"
            again.ack()
        async with delivery.connect(collector_filters("t")) as link:
            await _publish(broker.port, "fleet/f/v2/batch", b"next")
            nxt = await anext(aiter(link.messages()))
            assert nxt.payload == b"next"  # the acknowledged one is not delivered again
            nxt.ack()
