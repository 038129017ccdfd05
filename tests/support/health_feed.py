"""Health snapshots sent like an agent sends them, and a wall clock a test can move."""

from __future__ import annotations

import asyncio
import time

import aiomqtt

from harness.collector import FLEET
from protocol.ack import decode_ack
from protocol.batch import Batch
from protocol.codec import encode_batch
from protocol.records import Health, Scalar


class Clock:
    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


def health_batch(vehicle: str, seq: int, t: int, values: dict[str, Scalar]) -> bytes:
    return encode_batch(
        Batch.build(
            fleet_id=FLEET, vehicle_id=vehicle, epoch=3, seq=seq, sent_ms=t,
            health=[Health(t, values)],
        )
    )  # fmt: skip


async def publish_acked(port: int, vehicle: str, data: bytes, seq: int) -> int:
    """Publish one payload like an agent and wait (bounded) for an ack reaching ``seq``."""
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as c:
        await c.subscribe(f"fleet/{FLEET}/{vehicle}/ack", qos=1)
        await c.publish(f"fleet/{FLEET}/{vehicle}/health", data, qos=1)
        async with asyncio.timeout(20):
            async for message in c.messages:
                assert isinstance(message.payload, bytes)
                ack = decode_ack(message.payload)
                if ack.seq >= seq:
                    return ack.seq
    raise AssertionError("no ack")
