"""Quarantine is bounded (a real mosquitto with the shipped 4 MiB message limit, the real
Ingestor and SQLite store): a payload at the broker's limit, retained junk under invented
fleet names and a stream of junk from one sender leave the database a few hundred kB
bigger, not tens of MB, and a collector restart does not store the retained junk again,
whether the collector cleared it at the broker or recognises it by its hash."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from cloud_collector.config import MqttConfig, QuarantineConfig
from cloud_collector.ingest import Ingestor
from cloud_collector.metrics import IngestMetrics
from cloud_collector.mqtt import MqttDelivery
from cloud_collector.store import open_store
from harness.collector import FLEET
from harness.mosquitto import MosquittoHarness
from tests.support.ingest_run import Running

pytestmark = pytest.mark.integration
BROKER_LIMIT = 4 * 1024 * 1024  # mosquitto/mosquitto.conf message_size_limit
JUNK_BYTES = 256 * 1024
RETAINED = 30  # junk status messages, each under an invented fleet
STREAM = 60  # junk batches from the same sender
SENDER = "rogue"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoHarness]:
    extra = f"message_size_limit {BROKER_LIMIT}"
    with MosquittoHarness(tmp_path, persistence=True, extra_config=extra) as b:
        yield b


@contextlib.asynccontextmanager
async def running(
    broker: MosquittoHarness, db: Path, quarantine: QuarantineConfig
) -> AsyncIterator[Running]:
    store = await open_store(f"sqlite:///{db}")
    metrics = IngestMetrics()
    cfg = MqttConfig(
        port=broker.port, group="tests", client_id="q-1", reconnect_min_s=0.1, reconnect_max_s=0.5
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        Ingestor(cfg, store, metrics, delivery=MqttDelivery(cfg), quarantine=quarantine).run(stop)
    )
    run = Running(broker, store, metrics)
    try:
        await run.wait_connected()
        yield run
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await store.close()


def db_bytes(db: Path) -> int:
    """The database file's size with the WAL folded in (the store is closed)."""
    with contextlib.closing(sqlite3.connect(db)) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db.stat().st_size


async def empty_db(db: Path) -> int:
    """Create the migrated store (no MQTT session yet) and return its size."""
    store = await open_store(f"sqlite:///{db}")
    await store.close()
    return db_bytes(db)


def junk(n: int, seed: int) -> bytes:
    """Incompressible bytes that are neither msgpack maps nor zstd."""
    out = bytearray(hashlib.sha256(seed.to_bytes(8, "big")).digest() * (n // 32 + 1))
    out[0] = 0xC1  # never valid msgpack
    return bytes(out[:n])


async def publish_retained_junk(port: int) -> None:
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as c:
        for i in range(RETAINED):
            topic = f"fleet/invented{i}/{SENDER}/status"
            await c.publish(topic, junk(JUNK_BYTES, i), qos=1, retain=True)


async def publish_stream(port: int) -> None:
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as c:
        topic = f"fleet/{FLEET}/{SENDER}/batch"
        await c.publish(topic, os.urandom(BROKER_LIMIT - 1024), qos=1)
        for i in range(STREAM):
            await c.publish(topic, junk(JUNK_BYTES, 1000 + i), qos=1)


async def retained_left(port: int) -> int:
    """Retained messages the broker still holds under fleet/+/+/status (bounded wait)."""
    got = 0
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as c:
        await c.subscribe("fleet/+/+/status", qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.5):
                async for m in c.messages:
                    got += int(m.retain and bool(m.payload))
    return got


def handled(run: Running) -> int:
    m = run.metrics
    return sum(m.quarantined.values()) + sum(m.dropped.values())


async def fill(broker: MosquittoHarness, db: Path, q: QuarantineConfig) -> Running:
    await publish_retained_junk(broker.port)
    async with running(broker, db, q) as run:

        async def retained_seen() -> bool:
            return handled(run) >= RETAINED

        await run.wait_for(retained_seen)
        await publish_stream(broker.port)

        async def all_seen() -> bool:
            return handled(run) >= RETAINED + 1 + STREAM

        await run.wait_for(all_seen, timeout_s=30)
    return run


async def test_quarantine_bounded_and_retained_junk_cleared(
    broker: MosquittoHarness, tmp_path: Path
) -> None:
    db = tmp_path / "q.sqlite3"
    q = QuarantineConfig()
    empty = await empty_db(db)
    run = await fill(broker, db, q)
    assert sum(run.metrics.quarantined.values()) == RETAINED + 1 + STREAM
    assert run.metrics.retained_cleared == RETAINED
    grown = db_bytes(db) - empty
    offered = RETAINED * JUNK_BYTES + BROKER_LIMIT + STREAM * JUNK_BYTES
    # Kept: a 4 KiB prefix of each of the 91 payloads, with its size and hash.
    assert grown < 1024 * 1024, (grown, offered)
    with contextlib.closing(sqlite3.connect(db)) as c:
        sizes = c.execute("SELECT MAX(length(payload)), MAX(size), COUNT(*) FROM quarantine")
        kept, biggest, rows = sizes.fetchone()
    assert (kept, biggest, rows) == (q.keep_bytes, BROKER_LIMIT - 1024, RETAINED + 1 + STREAM)
    assert await retained_left(broker.port) == 0
    # A restart finds nothing retained to quarantine again.
    async with running(broker, db, q) as again:
        await asyncio.sleep(1.0)
        assert sum(again.metrics.quarantined.values()) == 0
    assert db_bytes(db) - empty == grown


async def test_retained_junk_recognised_and_daily_quota(
    broker: MosquittoHarness, tmp_path: Path
) -> None:
    """The broker keeps the retained junk (clearing off, as when its ACL refuses the
    collector's clear): a restart sees all of it again and stores none of it again; the
    sender's daily quota stops storing after ``max_per_sender_day`` payloads."""
    db = tmp_path / "q.sqlite3"
    quota = 50
    q = QuarantineConfig(clear_retained=False, max_per_sender_day=quota)
    empty = await empty_db(db)
    run = await fill(broker, db, q)
    outcomes = run.metrics.quarantine_outcomes
    assert (outcomes["stored"], outcomes["over_cap"]) == (quota, RETAINED + 1 + STREAM - quota)
    grown = db_bytes(db) - empty
    assert grown < 1024 * 1024
    with contextlib.closing(sqlite3.connect(db)) as c:
        row = c.execute(
            "SELECT stored, dropped, dropped_bytes FROM quarantine_budget WHERE sender = ?",
            (SENDER,),
        ).fetchone()
    assert row[:2] == (quota, RETAINED + 1 + STREAM - quota)
    # The retained junk and the big payload came first: the junk batches went over.
    assert row[2] == (RETAINED + 1 + STREAM - quota) * JUNK_BYTES  # their full sizes
    assert await retained_left(broker.port) == RETAINED
    async with running(broker, db, q) as again:

        async def redelivered() -> bool:
            return handled(again) >= RETAINED

        await again.wait_for(redelivered)
        # All 30 were stored the first time (they came first): each is a repeat now.
        assert again.metrics.quarantine_outcomes["repeat"] == RETAINED
    assert db_bytes(db) - empty == grown
