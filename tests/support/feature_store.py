"""A store with features of every collection (located and unlocated events, cell-hours,
sign clusters) for the OGC API, GDAL and export tests, and the store's own counts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from cloud_collector.store import Store
from harness.collector import T0, make_batch, payload
from protocol.batch import Batch
from protocol.records import Event, FrameRef, GnssFix

VEHICLES = ("taxi-a", "taxi-b")
BATCHES = 4
SIGNS = 3  # distinct sign positions, 100 m apart


def _signs_batch(vehicle: str, seq: int) -> Batch:
    events = []
    for i in range(SIGNS):
        t = T0 + 500_000 + i * 1000
        fix = GnssFix(t, 37.57 + i * 0.001, 126.98, 3, 30.0, 8.0, 10.0, 0)
        attrs: dict[str, int | str | float | bool | None] = {"sign_type": 3, "limit_kmh": 50}
        events.append(Event("tsr_sign", t, 40.0, fix, FrameRef("cam", 0x720), attrs))
    return Batch.build(
        fleet_id="demo", vehicle_id=vehicle, epoch=42, seq=seq, sent_ms=T0 + 600_000,
        events=events,
    )  # fmt: skip


async def seed(store: Store) -> None:
    """``make_batch`` batches of each vehicle (every third event without a fix), then
    one batch of signs."""
    for v in VEHICLES:
        for seq in range(1, BATCHES + 1):
            batch = make_batch(v, 42, seq, events=3)
            await store.ingest(
                batch, topic_channel="batch", payload_bytes=len(payload(v, 42, seq)),
                received_ms=batch.header.sent_ms,
            )  # fmt: skip
    signs = _signs_batch(VEHICLES[0], BATCHES + 1)
    await store.ingest(signs, topic_channel="batch", payload_bytes=500, received_ms=T0)


def counts(db: Path) -> dict[str, int]:
    """Rows per collection as the SQLite store holds them (events: located ones)."""
    with sqlite3.connect(db) as con:

        def one(sql: str) -> int:
            return int(con.execute(sql).fetchone()[0])

        return {
            "events": one("SELECT COUNT(*) FROM events WHERE lat IS NOT NULL"),
            "road-conditions": one("SELECT COUNT(*) FROM road_cells"),
            "signs": one("SELECT COUNT(*) FROM sign_clusters"),
        }
