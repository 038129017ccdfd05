"""The retention job removes exactly what is older than each table's setting, on SQLite
(batched deletes) and on PostgreSQL (whole partitions dropped, the rest deleted), and
counts what it did for /metrics."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, cast

import pytest

from cloud_collector.config import RetentionConfig
from cloud_collector.metrics import IngestMetrics, render
from cloud_collector.retention_job import RetentionJob
from cloud_collector.store import Store, open_store
from cloud_collector.store.engine import Tx
from cloud_collector.store.maintenance import maintenance_for
from cloud_collector.store.retention import DAY_MS
from cloud_collector.store.shared import SplitStore
from harness.postgres import PgHarness
from protocol.records import Health, RawFrame, SignalSeries
from tests.support.store_records import batch, event, fix

_names = itertools.count()
KEEP_DAYS = 30
# The cut falls inside a day and a week, so a partition straddles it.
CUT = 1_796_221_303_089  # Wednesday 2026-12-02 14:21:43.089 UTC
NOW = CUT + KEEP_DAYS * DAY_MS
OLD = CUT - 20 * DAY_MS  # in partitions that end before the cut
TIMES = (OLD, CUT - 1, CUT)
KEPT = (CUT,)
TABLES = {
    "events": "time_ms",
    "samples": "time_ms",
    "gnss": "time_ms",
    "health": "time_ms",
    "evidence_frames": "event_ms",
    "quarantine": "received_ms",
}


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'store.db'}"
    pg: PgHarness = request.getfixturevalue("pg_server")
    return pg.create_database(f"ret{next(_names)}")


async def _times(store: Store, table: str, column: str) -> list[int]:
    async def work(tx: Tx) -> list[int]:
        return sorted(int(r[0]) for r in await tx.fetch(f"SELECT {column} FROM {table}"))

    runner = cast("SplitStore[Any]", store).runner
    times: list[int] = await runner.run(work)
    return times


async def _fill(store: Store) -> None:
    for seq, t in enumerate(TIMES, 1):
        b = batch(
            seq,
            events=[event("fcw", t)],
            signals=[SignalSeries("speed", (t,), (1.0,), "km/h")],
            gnss=[fix(t)],
            health=[Health(t, {"cpu": 1})],
            frames=[RawFrame("cam", t * 1000, 0x700, bytes(8), event_ms=t)],
        )
        await store.ingest(b, topic_channel="bulk", payload_bytes=1, received_ms=t)
        await store.quarantine(
            topic="fleet/seoul/taxi-1/bulk", payload=b"junk", reason="bad", received_ms=t,
            fleet="seoul", vehicle="taxi-1",
        )  # fmt: skip


async def test_the_job_removes_exactly_what_is_older_than_the_setting(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        maintenance = maintenance_for(store)
        # Partitions as a collector running at the time would have made them.
        for t in TIMES:
            await maintenance.ensure_partitions(t, {})
        await _fill(store)
        for table, column in TABLES.items():
            assert await _times(store, table, column) == list(TIMES), table
        cfg = RetentionConfig.model_validate(
            {f"{k}_days": KEEP_DAYS for k in ("samples", "gnss", "events", "health", "quarantine")}
            | {"batch_rows": 1}  # one row per transaction: the batching loop is exercised
        )
        metrics = IngestMetrics()
        job = RetentionJob(cfg, maintenance, metrics, clock_ms=lambda: NOW)
        summary = await job.run_once()
        for table, column in TABLES.items():
            assert await _times(store, table, column) == list(KEPT), table
        partitioned = store_url.startswith("postgresql")
        if partitioned:
            # The old rows went with their partitions, those at cut - 1 ms by DELETE.
            assert summary.dropped >= 5
            assert metrics.partitions_dropped["samples"] >= 1
            assert metrics.retention_deleted["samples"] == 1
        else:
            assert summary.dropped == 0
            assert metrics.retention_deleted["samples"] == 2
        assert metrics.retention_deleted["quarantine"] == 2
        assert metrics.retention_last_run_ms == NOW
        text = render(metrics)
        assert f"collector_retention_last_run_timestamp_seconds {NOW / 1000!r}" in text
        assert 'collector_retention_rows_deleted_total{table="quarantine"} 2' in text
        again = await job.run_once()
        assert (again.dropped, again.deleted) == (0, 0)
    finally:
        await store.close()


async def test_zero_days_keeps_for_ever(store: Store) -> None:
    await _fill(store)
    cfg = RetentionConfig(samples_days=0, gnss_days=0, events_days=0, health_days=0,
                          quarantine_days=0, cell_vehicles_days=0)  # fmt: skip
    job = RetentionJob(cfg, maintenance_for(store), IngestMetrics(), clock_ms=lambda: NOW * 2)
    assert (await job.run_once()).deleted == 0
    for table, column in TABLES.items():
        assert await _times(store, table, column) == list(TIMES), table


HOUR_MS = 3_600_000


async def _cell_hours(store: Store) -> list[tuple[int, int]]:
    """(hour, vehicles) of the road_cells rows, and the hours road_cell_vehicles holds."""

    async def work(tx: Tx) -> list[tuple[int, int]]:
        rows = await tx.fetch("SELECT hour_ms, vehicles FROM road_cells ORDER BY hour_ms")
        return [(int(r[0]), int(r[1])) for r in rows]

    runner = cast("SplitStore[Any]", store).runner
    out: list[tuple[int, int]] = await runner.run(work)
    return out


async def test_cell_vehicles_expire_by_their_hour_and_a_late_batch_is_not_counted_twice(
    store_url: str,
) -> None:
    store = await open_store(store_url, contributions_ms=KEEP_DAYS * DAY_MS)
    try:
        old_hour = OLD // HOUR_MS * HOUR_MS
        kept_hour = (CUT + HOUR_MS) // HOUR_MS * HOUR_MS
        for seq, t in enumerate((OLD, kept_hour), 1):
            b = batch(seq, events=[event("fcw", t)])
            await store.ingest(b, topic_channel="bulk", payload_bytes=1, received_ms=t)
        assert await _times(store, "road_cell_vehicles", "hour_ms") == [old_hour, kept_hour]
        cfg = RetentionConfig(samples_days=0, gnss_days=0, events_days=0, health_days=0,
                              quarantine_days=0, cell_vehicles_days=KEEP_DAYS)  # fmt: skip
        metrics = IngestMetrics()
        summary = await RetentionJob(cfg, maintenance_for(store), metrics,
                                     clock_ms=lambda: NOW).run_once()  # fmt: skip
        assert summary.deleted == 1
        assert await _times(store, "road_cell_vehicles", "hour_ms") == [kept_hour]
        assert metrics.retention_deleted["road_cell_vehicles"] == 1
        assert 'collector_retention_rows_deleted_total{table="road_cell_vehicles"} 1' in render(
            metrics
        )
        # The count stays with the cell-hour; a batch of the same taxi for that hour
        # arriving now adds its event but not the taxi a second time.
        assert await _cell_hours(store) == [(old_hour, 1), (kept_hour, 1)]
        late = batch(3, events=[event("fcw", OLD + 1)])
        await store.ingest(late, topic_channel="bulk", payload_bytes=1, received_ms=NOW)
        assert await _cell_hours(store) == [(old_hour, 1), (kept_hour, 1)]
        assert await _times(store, "road_cell_vehicles", "hour_ms") == [kept_hour]
    finally:
        await store.close()


async def _plan(store: Store, sql: str, *setup: str) -> str:
    """The query plan of ``sql`` (without running it), as one string."""

    async def work(tx: Tx) -> str:
        for statement in setup:
            await tx.execute(statement)
        return " | ".join(" ".join(str(c) for c in row) for row in await tx.fetch(sql))

    runner = cast("SplitStore[Any]", store).runner
    plan: str = await runner.run(work)
    return plan


async def test_cell_vehicles_expiry_reads_by_hour_and_removes_exactly_the_older_rows(
    store_url: str,
) -> None:
    """Migration 0013: the expiry of road_cell_vehicles (``hour_ms < cut``) finds its rows
    by an index on the hour, not by reading the table, and still removes exactly them."""
    store = await open_store(store_url)
    try:
        hours = (OLD, CUT - 1, CUT, CUT + HOUR_MS)
        rows = [(f"taxi-{v}", h, cell) for v in range(3) for h in hours for cell in (7, 8)]

        async def fill(tx: Tx) -> None:
            for row in rows:
                await tx.execute(
                    "INSERT INTO road_cell_vehicles (vehicle, hour_ms, cell) VALUES (?, ?, ?)",
                    *row,
                )

        await cast("SplitStore[Any]", store).runner.run(fill)
        if store_url.startswith("postgresql"):
            # A handful of rows is read fastest whole: forbid that to see the index chosen.
            plan = await _plan(
                store, f"EXPLAIN DELETE FROM road_cell_vehicles WHERE hour_ms < {CUT}",
                "SET LOCAL enable_seqscan = off",
            )  # fmt: skip
        else:
            plan = await _plan(
                store,
                "EXPLAIN QUERY PLAN DELETE FROM road_cell_vehicles WHERE (vehicle, hour_ms, cell)"
                " IN (SELECT vehicle, hour_ms, cell FROM road_cell_vehicles"
                f" WHERE hour_ms < {CUT} LIMIT 2)",
            )
        assert "road_cell_vehicles_hour" in plan, plan
        cfg = RetentionConfig(samples_days=0, gnss_days=0, events_days=0, health_days=0,
                              quarantine_days=0, cell_vehicles_days=KEEP_DAYS,
                              batch_rows=2)  # fmt: skip
        metrics = IngestMetrics()
        job = RetentionJob(cfg, maintenance_for(store), metrics, clock_ms=lambda: NOW)
        summary = await job.run_once()
        kept = sorted(h for _, h, _ in rows if h >= CUT)
        assert await _times(store, "road_cell_vehicles", "hour_ms") == kept
        assert summary.deleted == len(rows) - len(kept) == 12
        assert metrics.retention_deleted["road_cell_vehicles"] == 12
    finally:
        await store.close()
