"""A vehicle's health history downsampled in the store (real SQLite and real PostgreSQL)
and over ``GET /v1/vehicles/{id}/health``: a week of snapshots every 5 s comes back as at
most N time buckets spanning the week, each with its last snapshot, count, min and max."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloud_collector.api import create_app
from cloud_collector.errors import QueryError
from cloud_collector.geojson import iso_ms
from cloud_collector.metrics import IngestMetrics
from cloud_collector.store import Store, open_store
from cloud_collector.store.base import HealthQuery
from protocol.batch import Batch
from protocol.records import Health
from tests.support.api_client import api_client

T0 = 1_772_323_200_000  # 2026-03-01T00:00:00Z
WEEK = 7 * 86_400_000
STEP = 5_000
N_SNAPSHOTS = WEEK // STEP  # 120,960
PER_BATCH = 10_000


def snapshot(i: int) -> Health:
    # A backlog that builds up and drains every 1,000 snapshots; a flag that is no number.
    return Health(T0 + i * STEP, {"outbox_pending_batches": i % 1000, "uplink_connected": True})


async def seed_week(store: Store) -> None:
    for seq, start in enumerate(range(0, N_SNAPSHOTS, PER_BATCH), start=1):
        health = [snapshot(i) for i in range(start, min(start + PER_BATCH, N_SNAPSHOTS))]
        b = Batch.build(
            fleet_id="demo", vehicle_id="taxi-1", epoch=5, seq=seq, sent_ms=T0, health=health
        )
        await store.ingest(b, topic_channel="health", payload_bytes=1000, received_ms=T0 + WEEK)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await open_store(store_url)
    try:
        await seed_week(s)
        yield s
    finally:
        await s.close()


def expected_buckets(lo: int, width: int) -> dict[int, list[int]]:
    """Snapshot indexes per bucket, computed here the slow way."""
    out: dict[int, list[int]] = {}
    for i in range(N_SNAPSHOTS):
        out.setdefault((T0 + i * STEP - lo) // width, []).append(i)
    return out


async def test_a_week_downsampled(store: Store) -> None:
    q = HealthQuery(vehicle="taxi-1", since_ms=T0, until_ms=T0 + WEEK, points=500)
    points = await store.health_history(q)
    width = -(-WEEK // 500)
    buckets = expected_buckets(T0, width)
    assert len(points) == len(buckets) <= 500
    assert points[0].time_ms < T0 + width  # the answer spans the week
    assert points[-1].time_ms == T0 + (N_SNAPSHOTS - 1) * STEP
    assert points[-1].values == snapshot(N_SNAPSHOTS - 1).values
    assert sum(p.count or 0 for p in points) == N_SNAPSHOTS
    for p, members in zip(points, buckets.values(), strict=True):
        last = members[-1]
        assert (p.time_ms, p.count) == (T0 + last * STEP, len(members))
        assert p.values == snapshot(last).values
        pending = [i % 1000 for i in members]
        assert (p.low, p.high) == (
            {"outbox_pending_batches": min(pending)},
            {"outbox_pending_batches": max(pending)},
        )
    # Without a window: from the first snapshot to the last.
    whole = await store.health_history(HealthQuery(vehicle="taxi-1", points=7))
    assert len(whole) == 7
    assert whole[-1].time_ms == T0 + (N_SNAPSHOTS - 1) * STEP
    assert await store.health_history(HealthQuery(vehicle="nobody", points=7)) == []
    with pytest.raises(QueryError, match="points"):
        await store.health_history(HealthQuery(vehicle="taxi-1", points=0))


async def test_the_api_answers_a_week_in_at_most_n_points(tmp_path: Path) -> None:
    store = await open_store(f"sqlite://{tmp_path / 'api.db'}")
    try:
        await seed_week(store)
        app = create_app(store, IngestMetrics(), clock_ms=lambda: T0 + WEEK)
        async with api_client(app) as c:
            url = "/v1/vehicles/taxi-1/health"
            window = {"since": iso_ms(T0), "until": iso_ms(T0 + WEEK)}
            r = await c.get(url, params=window)  # 600 points by default
            assert r.status_code == 200, r.text
            body = r.json()
            width = -(-WEEK // 600)
            last = list(expected_buckets(T0, width).values())[-1]
            assert 590 <= len(body) <= 600
            assert body[0]["time_ms"] < T0 + width  # the answer spans the week
            assert body[-1]["values"] == {"outbox_pending_batches": 959, "uplink_connected": True}
            assert sum(p["count"] for p in body) == N_SNAPSHOTS
            assert body[-1]["max"] == {"outbox_pending_batches": max(i % 1000 for i in last)}
            r = await c.get(url, params={**window, "points": "24"})
            assert len(r.json()) == 24
            for params, why in [
                ({"points": "0"}, "points: must be within [1, 2000]"),
                ({"points": "2001"}, "points: must be within [1, 2000]"),
                ({"points": "many"}, "points: not an integer"),
                ({"points": "10", "limit": "10"}, "points: give either points or limit"),
            ]:
                r = await c.get(url, params=params)
                assert r.status_code == 400, r.text
                assert why in r.text
            # limit still gives the latest snapshots as stored.
            r = await c.get(url, params={"limit": "2"})
            assert [p["time_ms"] for p in r.json()] == [
                T0 + (N_SNAPSHOTS - 2) * STEP, T0 + (N_SNAPSHOTS - 1) * STEP
            ]  # fmt: skip
            assert "count" not in r.json()[0]
    finally:
        await store.close()
