"""Two collectors in one shared-subscription group on a real mosquitto: after a clean stop
of one, the other receives every new message at once (the stopped one ended its session,
so no share of the messages waits for it); with ``leave_group_on_stop = false`` the
stopped one's persistent session keeps taking its share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import pytest

from cloud_collector.config import MqttConfig
from cloud_collector.ingest import Ingestor
from cloud_collector.metrics import IngestMetrics
from cloud_collector.mqtt import MqttDelivery
from cloud_collector.store import Store, open_store
from harness.collector import FLEET, payload
from harness.mosquitto import MosquittoHarness
from protocol import batch_topic, decode_ack

pytestmark = pytest.mark.integration

MESSAGES = 20
# Well under the agents' 60-s end-to-end resend: what a departed member held would show.
PROMPT_S = 10.0


class Member:
    def __init__(self, broker: MosquittoHarness, store: Store, name: str, leave: bool) -> None:
        self.metrics = IngestMetrics()
        self.store = store
        cfg = MqttConfig(
            port=broker.port, group="g", client_id=name, leave_group_on_stop=leave,
            reconnect_min_s=0.1, reconnect_max_s=0.5,
        )  # fmt: skip
        self.stop = asyncio.Event()
        ingestor = Ingestor(cfg, store, self.metrics, delivery=MqttDelivery(cfg))
        self.task = asyncio.create_task(ingestor.run(self.stop))

    async def stopped(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 15)


async def _until(check: Callable[[], bool], timeout_s: float) -> None:
    """Poll ``check`` (bounded in count and time)."""
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


@contextlib.asynccontextmanager
async def _group(broker: MosquittoHarness, tmp: Path, leave: bool) -> AsyncIterator[list[Member]]:
    store = await open_store(f"sqlite://{tmp / 'store.db'}")
    members = [Member(broker, store, f"c-{i}", leave) for i in (1, 2)]
    try:
        await _until(lambda: all(m.metrics.connected for m in members), 20)
        yield members
    finally:
        for m in members:
            if not m.task.done():
                await m.stopped()
        await store.close()


@contextlib.asynccontextmanager
async def _taxis(port: int) -> AsyncIterator[aiomqtt.Client]:
    """One batch each from MESSAGES vehicles, published (PUBACKed by the broker) before
    the body runs; the client is subscribed to their acks."""
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="fleet-sim", protocol=aiomqtt.ProtocolVersion.V5
    ) as c:
        await c.subscribe(f"fleet/{FLEET}/+/ack", qos=1)
        for i in range(MESSAGES):
            vehicle = f"taxi-{i}"
            await c.publish(batch_topic(FLEET, vehicle), payload(vehicle, 1, 1), qos=1)
        yield c


async def _all_acked(c: aiomqtt.Client, timeout_s: float) -> None:
    acked: set[str] = set()
    async with asyncio.timeout(timeout_s):
        async for message in c.messages:
            assert isinstance(message.payload, bytes)
            acked.add(decode_ack(message.payload).vehicle_id)
            if len(acked) == MESSAGES:
                return


async def test_after_a_clean_stop_the_other_member_gets_every_message(
    broker: MosquittoHarness, tmp_path: Path
) -> None:
    async with _group(broker, tmp_path, leave=True) as (first, second):
        await first.stopped()
        async with _taxis(broker.port) as taxis:
            await _all_acked(taxis, PROMPT_S)
        assert second.metrics.stored["batch"] == MESSAGES
        assert first.metrics.stored["batch"] == 0


async def test_a_kept_session_holds_back_its_share(
    broker: MosquittoHarness, tmp_path: Path
) -> None:
    """What the setting avoids: mosquitto keeps handing the stopped member's persistent
    session its turn, and those messages wait for it: they arrive only when it returns."""
    async with _group(broker, tmp_path, leave=False) as (first, second):
        await first.stopped()
        async with _taxis(broker.port) as taxis:
            back = Member(broker, second.store, "c-1", leave=False)
            try:
                await _all_acked(taxis, PROMPT_S)
            finally:
                await back.stopped()
        assert back.metrics.stored["batch"] > 0
        assert second.metrics.stored["batch"] + back.metrics.stored["batch"] == MESSAGES
