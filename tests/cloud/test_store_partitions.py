"""Time partitions on a real PostgreSQL: migration 0008 of a populated database, inserts
landing in their partition, the default partition catching times no partition covers,
and the queries unchanged."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import asyncpg
import pytest

from cloud_collector.store import EventQuery, Store, open_store
from cloud_collector.store import migrations as mig
from cloud_collector.store.base import HealthQuery
from cloud_collector.store.maintenance import maintenance_for
from cloud_collector.store.retention import DAY_MS, WEEK_MS, period_start
from harness.postgres import PgHarness
from protocol.records import Health, RawFrame, SignalSeries
from tests.support.store_records import batch, event, fix

pytestmark = pytest.mark.integration

_names = itertools.count()
NOW = 1_796_221_303_089  # Wednesday 2026-12-02 14:21:43.089 UTC
EARLIER = NOW - 10 * DAY_MS
CLOCK_1970 = 5_000
CLOCK_2037 = 2_134_000_000_000
PRE_0008 = 6  # the last migration every database has before 0008 (0007 may be absent)


async def _partition_of(url: str, table: str, column: str) -> dict[int, str]:
    con = await asyncpg.connect(url)
    try:
        rows = await con.fetch(f"SELECT {column}, tableoid::regclass::text FROM {table}")
    finally:
        await con.close()
    return {int(r[0]): r[1] for r in rows}


async def _populated_old_database(url: str) -> None:
    """The schema as of migration 6, with rows written the way that schema's ingest did."""
    con = await asyncpg.connect(url)
    try:
        await con.execute(mig.CREATE_TABLE)
        for m in mig.load("postgres"):
            if m.version <= PRE_0008:
                await con.execute(m.sql)
                await con.execute(
                    "INSERT INTO schema_migrations VALUES ($1, $2, 0)", m.version, m.name
                )
        for t in (NOW, EARLIER, CLOCK_1970, CLOCK_2037):
            await con.execute(
                "INSERT INTO events (time_ms, vehicle, fleet, type, attrs, epoch, seq,"
                " source_bus) VALUES ($1, 'taxi-1', 'seoul', 'fcw', '{}', '7', 1, 'cam')",
                t,
            )
            await con.execute("INSERT INTO samples VALUES ('taxi-1', 'speed', $1, 1.5, 'km/h')", t)
            await con.execute(
                "INSERT INTO gnss VALUES ('taxi-1', $1, 37.5, 127.0, 3, NULL, NULL, NULL, NULL, 1)",
                t,
            )
            await con.execute("INSERT INTO health VALUES ('taxi-1', $1, '{\"cpu\": 1}')", t)
            await con.execute(
                "INSERT INTO evidence_frames VALUES ('taxi-1', 'cam', $1, $2, 1792, false,"
                " '\\x00')",
                t, t * 1000,
            )  # fmt: skip
    finally:
        await con.close()


@pytest.fixture
async def migrated(pg_server: PgHarness) -> AsyncIterator[tuple[str, Store]]:
    url = pg_server.create_database(f"part{next(_names)}")
    await _populated_old_database(url)
    store = await open_store(url)
    try:
        yield url, store
    finally:
        await store.close()


def _week(t: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(period_start(t, WEEK_MS) / 1000, UTC).strftime("%Y%m%d")


async def test_migration_moves_every_row_into_its_partition(
    migrated: tuple[str, Store],
) -> None:
    url, _ = migrated
    events = await _partition_of(url, "events", "time_ms")
    assert events == {
        NOW: f"events_p{_week(NOW)}",
        EARLIER: f"events_p{_week(EARLIER)}",
        CLOCK_1970: "events_default",
        CLOCK_2037: "events_default",
    }
    samples = await _partition_of(url, "samples", "time_ms")
    assert samples[NOW] == "samples_p20261202"
    assert samples[EARLIER] == "samples_p20261122"
    assert samples[CLOCK_1970] == samples[CLOCK_2037] == "samples_default"
    for table, column in (
        ("gnss", "time_ms"),
        ("health", "time_ms"),
        ("evidence_frames", "event_ms"),
    ):
        placed = await _partition_of(url, table, column)
        assert set(placed) == {NOW, EARLIER, CLOCK_1970, CLOCK_2037}, table
        assert placed[NOW].startswith(f"{table}_p"), table
        assert placed[CLOCK_2037] == f"{table}_default", table


async def test_queries_and_ids_unchanged_after_the_migration(migrated: tuple[str, Store]) -> None:
    url, store = migrated
    page = await store.events(EventQuery(limit=10))
    assert [(e.id, e.time_ms) for e in page.events] == [
        (3, CLOCK_1970), (2, EARLIER), (1, NOW), (4, CLOCK_2037),
    ]  # fmt: skip
    older = await store.events(EventQuery(until_ms=NOW, since_ms=EARLIER))
    assert [e.id for e in older.events] == [2]
    evidence = await store.event_evidence(1)
    assert evidence is not None
    assert [f.time_us for f in evidence.frames] == [NOW * 1000]
    points = await store.health_history(HealthQuery(vehicle="taxi-1", since_ms=EARLIER))
    assert [p.time_ms for p in points] == [EARLIER, NOW, CLOCK_2037]
    # New ids continue after the migrated ones, and new rows land in their partition.
    b = batch(
        1,
        events=[event("pcw", NOW + 1)],
        signals=[SignalSeries("speed", (NOW + 2,), (3.0,), "km/h")],
        gnss=[fix(NOW + 3)],
        health=[Health(NOW + 4, {"cpu": 2})],
        frames=[RawFrame("cam", (NOW + 1) * 1000, 0x700, bytes(8), event_ms=NOW + 1)],
    )
    assert (await store.ingest(b, topic_channel="urgent", payload_bytes=1, received_ms=NOW)).new
    page = await store.events(EventQuery(since_ms=NOW + 1, until_ms=NOW + DAY_MS))
    assert [(e.id, e.type) for e in page.events] == [(5, "pcw")]
    assert (await _partition_of(url, "events", "time_ms"))[NOW + 1] == f"events_p{_week(NOW)}"
    assert (await _partition_of(url, "samples", "time_ms"))[NOW + 2] == "samples_p20261202"
    frames = await _partition_of(url, "evidence_frames", "event_ms")
    assert frames[NOW + 1] == f"evidence_frames_p{_week(NOW)}"


async def test_partitions_made_ahead_and_the_default_catches_the_rest(
    pg_server: PgHarness,
) -> None:
    url = pg_server.create_database(f"part{next(_names)}")
    store = await open_store(url)
    try:
        maintenance = maintenance_for(store)
        created = await maintenance.ensure_partitions(NOW, {})
        assert "samples_p20261204" in created  # two days ahead
        assert f"events_p{_week(NOW + 2 * WEEK_MS)}" in created  # two weeks ahead
        assert await maintenance.ensure_partitions(NOW, {}) == []  # nothing twice
        b = batch(
            1,
            events=[event("fcw", NOW), event("fcw", CLOCK_1970), event("fcw", CLOCK_2037)],
            signals=[SignalSeries("speed", (NOW + 2 * DAY_MS, CLOCK_2037), (1.0, 2.0), "km/h")],
        )
        assert (await store.ingest(b, topic_channel="urgent", payload_bytes=1, received_ms=NOW)).new
        events = await _partition_of(url, "events", "time_ms")
        assert events == {
            NOW: f"events_p{_week(NOW)}",
            CLOCK_1970: "events_default",
            CLOCK_2037: "events_default",
        }
        assert (await _partition_of(url, "samples", "time_ms"))[NOW + 2 * DAY_MS] == (
            "samples_p20261204"
        )
        # When its time comes, the 2037 row moves out of the default partition into its own.
        later = await maintenance.ensure_partitions(CLOCK_2037, {})
        assert f"events_p{_week(CLOCK_2037)}" in later
        events = await _partition_of(url, "events", "time_ms")
        assert events[CLOCK_2037] == f"events_p{_week(CLOCK_2037)}"
        assert events[CLOCK_1970] == "events_default"  # before 2020: never a partition
        page = await store.events(EventQuery(limit=10))
        assert [e.time_ms for e in page.events] == [CLOCK_1970, NOW, CLOCK_2037]
    finally:
        await store.close()
