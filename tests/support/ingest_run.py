"""The collector's ingest running in-process against a real broker and a real store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from cloud_collector.config import MqttConfig
from cloud_collector.ingest import Ingestor
from cloud_collector.metrics import IngestMetrics
from cloud_collector.mqtt import MqttDelivery
from cloud_collector.store import Store
from harness.mosquitto import MosquittoHarness


class Running:
    def __init__(self, broker: MosquittoHarness, store: Store, metrics: IngestMetrics) -> None:
        self.broker = broker
        self.store = store
        self.metrics = metrics

    async def wait_for(self, check: Callable[[], Awaitable[bool]], timeout_s: float = 20) -> None:
        """Poll ``check`` (bounded): collector-side effects are asynchronous."""
        for _ in range(int(timeout_s / 0.05)):
            if await check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("condition not reached in time")

    async def wait_connected(self) -> None:
        async def connected() -> bool:
            return self.metrics.connected

        await self.wait_for(connected)


@contextlib.asynccontextmanager
async def collector(broker: MosquittoHarness, store: Store) -> AsyncIterator[Running]:
    metrics = IngestMetrics()
    cfg = MqttConfig(
        port=broker.port, group="tests", client_id="it-1", reconnect_min_s=0.1, reconnect_max_s=0.5
    )
    stop = asyncio.Event()
    task = asyncio.create_task(Ingestor(cfg, store, metrics, delivery=MqttDelivery(cfg)).run(stop))
    run = Running(broker, store, metrics)
    try:
        await run.wait_connected()
        yield run
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
