"""The subscriber against a real mosquitto and real stores (SQLite; PostgreSQL too).

The Ingestor runs in-process here (a task owned by the test); the process-level tests
(SIGKILL, two collectors, SIGTERM) are in test_collector_process.py.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from cloud_collector.store import EventQuery, Store, open_store
from cloud_collector.store.base import DEFAULT_QUARANTINE_LIMITS, IngestResult, QuarantineLimits
from harness.collector import (
    FLEET,
    GARBAGE,
    bad_body,
    make_batch,
    oversize,
    payload,
    publish_until_acked,
    unknown_version,
    wrong_vehicle,
    zstd_bomb,
)
from harness.mosquitto import MosquittoHarness
from harness.postgres import PgHarness
from protocol import BatchIdentity, Presence, Status, decode_ack, encode_status
from tests.support.ingest_run import collector

pytestmark = pytest.mark.integration
_db_names = itertools.count()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store(f"sqlite:///{tmp_path / 'c.sqlite3'}")
    yield store
    await store.close()


async def _all_events(store: Store) -> list[tuple[str, int, str]]:
    out: list[tuple[str, int, str]] = []
    cursor: str | None = None
    for _ in range(1000):
        page = await store.events(EventQuery(limit=500, cursor=cursor))
        out += [(e.vehicle, e.time_ms, e.type) for e in page.events]
        cursor = page.next_cursor
        if cursor is None:
            return out
    raise AssertionError("too many pages")


def _expected_events(items: list[tuple[str, int, int]]) -> list[tuple[str, int, str]]:
    return sorted((v, e.time_ms, e.type) for v, ep, s in items for e in make_batch(v, ep, s).events)


async def _ingest_roundtrip(broker: MosquittoHarness, store: Store) -> None:
    items = [(f"taxi-{v}", 1000 + v, s) for v in range(3) for s in range(1, 11)]
    async with collector(broker, store) as run:
        tracker = await publish_until_acked(broker.port, items, timeout_s=60)
        assert tracker.done({(f"taxi-{v}", 1000 + v): 10 for v in range(3)})
        assert tracker.regressions == 0
        # A duplicate (the agent missed the ack): stored once, acknowledged again.
        acks_before = run.metrics.acks_sent
        again = await publish_until_acked(broker.port, [("taxi-0", 1000, 10)], timeout_s=20)
        assert again.acked[("taxi-0", 1000)] == 10

        # The count follows the broker's PUBACK, which may come after the agent saw the ack.
        async def acked_again() -> bool:
            return run.metrics.acks_sent > acks_before

        await run.wait_for(acked_again)
        assert sum(run.metrics.duplicates.values()) >= 1
    assert sorted(await _all_events(store)) == _expected_events(items)
    vehicle = await store.vehicle("taxi-0")
    assert vehicle is not None
    assert vehicle.batches_total == 10
    assert vehicle.last_seq is not None  # "last" in commit order: concurrent on PostgreSQL


async def test_ingest_sqlite(broker: MosquittoHarness, sqlite_store: Store) -> None:
    await _ingest_roundtrip(broker, sqlite_store)


async def test_ingest_postgres(
    broker: MosquittoHarness,
    pg_server: PgHarness,
) -> None:
    store = await open_store(pg_server.create_database(f"ingest{next(_db_names)}"))
    try:
        await _ingest_roundtrip(broker, store)
    finally:
        await store.close()


async def test_hostile_payloads_are_quarantined(
    broker: MosquittoHarness, sqlite_store: Store
) -> None:
    ep = 77
    hostile = {
        "bad_msgpack": GARBAGE,
        "too_large_compressed": oversize("taxi-h", ep, 2),
        "too_large_decompressed": zstd_bomb("taxi-h", ep, 3),
        "wrong_vehicle": wrong_vehicle("taxi-h", ep, 4),
        "unknown_version": unknown_version("taxi-h", ep, 5),
        "bad_zstd": bad_body("taxi-h", ep, 6),
    }
    async with collector(broker, sqlite_store) as run:
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as raw:
            for data in hostile.values():
                await raw.publish(f"fleet/{FLEET}/taxi-h/batch", data, qos=1)
                # Good data keeps flowing between the bad payloads.
            await raw.publish(f"fleet/{FLEET}/taxi-h/batch", payload("taxi-h", ep, 1), qos=1)

        async def all_quarantined() -> bool:
            return sum(run.metrics.quarantined.values()) >= len(hostile)

        await run.wait_for(all_quarantined)
        tracker = await publish_until_acked(broker.port, [("taxi-g", 1, 1), ("taxi-g", 1, 2)])
        assert tracker.acked[("taxi-g", 1)] == 2
        assert dict(run.metrics.quarantined) == dict.fromkeys(hostile, 1)
        assert run.metrics.stored["batch"] == 3  # taxi-h seq 1, taxi-g seq 1 and 2
    vehicle = await sqlite_store.vehicle("taxi-h")
    assert vehicle is not None
    assert vehicle.quarantined == len(hostile)
    figures = await sqlite_store.metrics()
    assert isinstance(figures, dict)


async def test_presence_from_status(broker: MosquittoHarness, sqlite_store: Store) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as c:
        # Retained before the collector subscribes: arrives on subscribe (unshared filter).
        online = Status(state=Presence.ONLINE, time_ms=1_772_436_600_000)
        await c.publish(f"fleet/{FLEET}/taxi-p/status", encode_status(online), qos=1, retain=True)
    async with collector(broker, sqlite_store) as run:

        async def online_seen() -> bool:
            v = await sqlite_store.vehicle("taxi-p")
            return v is not None and v.online is True

        await run.wait_for(online_seen)
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as c:
            offline = Status(state=Presence.OFFLINE, time_ms=1_772_436_700_000)
            await c.publish(
                f"fleet/{FLEET}/taxi-p/status", encode_status(offline), qos=1, retain=True
            )

        async def offline_seen() -> bool:
            v = await sqlite_store.vehicle("taxi-p")
            return v is not None and v.online is False

        await run.wait_for(offline_seen)


async def test_broker_restart_resumes(broker: MosquittoHarness, sqlite_store: Store) -> None:
    first = [("taxi-r", 5, s) for s in range(1, 6)]
    second = [("taxi-r", 5, s) for s in range(6, 11)]
    async with collector(broker, sqlite_store) as run:
        await publish_until_acked(broker.port, first)
        connects = run.metrics.connects
        broker.restart()

        async def reconnected() -> bool:
            return run.metrics.connected and run.metrics.connects > connects

        await run.wait_for(reconnected)
        tracker = await publish_until_acked(broker.port, second, timeout_s=60)
        assert tracker.acked[("taxi-r", 5)] == 10
    v = await sqlite_store.vehicle("taxi-r")
    assert v is not None
    assert v.batches_total == 10


class _QuarantineWithReceipt:
    """A store that can also quarantine under an identity (the optional capability the
    ingest uses when a backend offers it); here a thin stand-in around the real store."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.identified: list[tuple[str, int, int, str]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def quarantine_batch(
        self, *, identity: BatchIdentity, topic: str, payload: bytes, reason: str,
        received_ms: int, limits: QuarantineLimits = DEFAULT_QUARANTINE_LIMITS,
    ) -> IngestResult:  # fmt: skip
        await self.inner.quarantine(
            topic=topic, payload=payload, reason=reason, received_ms=received_ms,
            fleet=identity.fleet_id, vehicle=identity.vehicle_id, limits=limits,
        )  # fmt: skip
        self.identified.append((identity.vehicle_id, identity.epoch, identity.seq, reason))
        return IngestResult(new=True, contiguous_seq=identity.seq)


async def test_unknown_version_is_acknowledged_when_the_store_can(
    broker: MosquittoHarness, sqlite_store: Store
) -> None:
    store = _QuarantineWithReceipt(sqlite_store)
    async with collector(broker, store) as run:  # type: ignore[arg-type]
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as agent:
            await agent.subscribe(f"fleet/{FLEET}/taxi-u/ack", qos=1)
            await agent.publish(
                f"fleet/{FLEET}/taxi-u/batch", unknown_version("taxi-u", 31, 1), qos=1
            )
            async with asyncio.timeout(20):
                message = await anext(aiter(agent.messages))
        assert isinstance(message.payload, bytes)
        ack = decode_ack(message.payload)
        assert (ack.vehicle_id, ack.epoch, ack.seq) == ("taxi-u", 31, 1)
        assert store.identified == [("taxi-u", 31, 1, "unknown_version")]
        assert run.metrics.quarantined["unknown_version"] == 1
