"""Health in the store (real SQLite and real PostgreSQL): history, the per-vehicle health
state (latest snapshot, seq gaps, bytes received) and identified quarantine."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cloud_collector.alerts import TWO_EPOCHS, Thresholds, evaluate_alerts
from cloud_collector.errors import QueryError
from cloud_collector.store import Store, open_store
from cloud_collector.store.base import HealthQuery
from harness.postgres import PgHarness
from protocol import BatchIdentity
from protocol.batch import Batch
from protocol.records import Event, Health

T0 = 1_772_323_200_000  # 2026-03-01T00:00:00Z
DAY = 86_400_000
_db_names = itertools.count()


def batch(seq: int, *, vehicle: str = "taxi-1", epoch: int = 2**64 - 3, **records: Any) -> Batch:
    if not records:
        records = {"events": [Event("fcw", T0 + seq, None, None, None, {})]}
    return Batch.build(
        fleet_id="demo", vehicle_id=vehicle, epoch=epoch, seq=seq, sent_ms=T0, **records
    )


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await open_store(store_url, gap_grace_ms=600_000)
    try:
        yield s
    finally:
        await s.close()


async def put(store: Store, b: Batch, received_ms: int, size: int = 1000) -> tuple[bool, int]:
    r = await store.ingest(b, topic_channel="health", payload_bytes=size, received_ms=received_ms)
    return r.new, r.contiguous_seq


async def test_health_history_and_latest(store: Store) -> None:
    snaps1 = [
        Health(T0 + 1000 * i, {"outbox_pending_batches": i, "gnss_mode": 3}) for i in range(5)
    ]
    await put(store, batch(1, health=snaps1), T0 + 10_000)
    # Older snapshots arriving later (a backlog) do not replace the latest one.
    await put(
        store, batch(2, health=[Health(T0 + 500, {"outbox_pending_batches": 99})]), T0 + 20_000
    )
    points = await store.health_history(HealthQuery(vehicle="taxi-1"))
    assert [p.time_ms for p in points] == [T0, T0 + 500, T0 + 1000, T0 + 2000, T0 + 3000, T0 + 4000]
    assert points[1].values == {"outbox_pending_batches": 99}
    window = await store.health_history(
        HealthQuery(vehicle="taxi-1", since_ms=T0 + 1000, until_ms=T0 + 3000)
    )
    assert [p.values["outbox_pending_batches"] for p in window] == [1, 2]
    # The LATEST n, oldest first.
    last2 = await store.health_history(HealthQuery(vehicle="taxi-1", limit=2))
    assert [p.time_ms for p in last2] == [T0 + 3000, T0 + 4000]
    assert await store.health_history(HealthQuery(vehicle="nobody")) == []
    with pytest.raises(QueryError):
        await store.health_history(HealthQuery(vehicle="taxi-1", limit=0))
    [state] = await store.vehicle_health("taxi-1")
    assert state.latest_health is not None
    assert state.latest_health.time_ms == T0 + 4000
    assert state.latest_health.values == {"outbox_pending_batches": 4, "gnss_mode": 3}
    # A later snapshot replaces it; a duplicate batch changes nothing.
    await put(store, batch(3, health=[Health(T0 + 9000, {"camera_tamper": True})]), T0 + 30_000)
    await put(store, batch(3, health=[Health(T0 + 9000, {"camera_tamper": True})]), T0 + 31_000)
    [state] = await store.vehicle_health("taxi-1")
    assert state.latest_health is not None
    assert state.latest_health.values == {"camera_tamper": True}
    assert len(await store.health_history(HealthQuery(vehicle="taxi-1"))) == 7


async def test_seq_gaps_bytes_and_duplicates(store: Store) -> None:
    for seq in (1, 2, 5, 6, 9):
        await put(store, batch(seq), T0 + seq * 1000)
    await put(store, batch(3, epoch=11), T0 + 10_000, size=500)
    assert await put(store, batch(2), T0 + 11_000) == (False, 2)  # a duplicate
    await put(store, batch(1, vehicle="taxi-2"), T0 + DAY + 1)  # the next day
    states = {s.status.vehicle: s for s in await store.vehicle_health()}
    one = states["taxi-1"]
    assert one.seq_gaps == {str(2**64 - 3): 4, "11": 2}  # 3, 4, 7, 8 and 1, 2
    # Payload bytes received, duplicates included (the data plan pays for them too).
    assert (one.rx_day, one.rx_bytes_today) == ("2026-03-01", 6 * 1000 + 500)
    assert (one.rx_month, one.rx_bytes_month) == ("2026-03", 6 * 1000 + 500)
    assert one.status.duplicates == 1
    assert one.status.batches_total == 6
    assert one.camera_failsafe is False
    assert one.latest_health is None
    two = states["taxi-2"]
    assert (two.seq_gaps, two.rx_day, two.rx_bytes_today) == ({}, "2026-03-02", 1000)
    # Filling the gaps clears them; a new month restarts the month counter.
    for seq in (3, 4, 7, 8):
        await put(store, batch(seq), T0 + 31 * DAY + seq)
    [one] = await store.vehicle_health("taxi-1")
    assert one.seq_gaps == {"11": 2}
    assert (one.rx_month, one.rx_bytes_month, one.rx_day) == ("2026-04", 4000, "2026-04-01")
    assert await store.vehicle_health("nobody") == []


async def test_camera_failsafe_state_from_data(store: Store) -> None:
    from protocol.records import SignalSeries

    on = SignalSeries("ME_Display_Warnings.failsafe", (T0 + 1,), (1.0,), "")
    await put(store, batch(1, signals=[on]), T0 + 1000)
    [s] = await store.vehicle_health("taxi-1")
    assert s.camera_failsafe is True
    off = SignalSeries("ME_Display_Warnings.failsafe", (T0 + 2,), (0.0,), "")
    await put(store, batch(2, signals=[off]), T0 + 2000)
    [s] = await store.vehicle_health("taxi-1")
    assert s.camera_failsafe is False


async def test_quarantine_batch_counts_for_the_ack(store: Store) -> None:
    def ident(seq: int, epoch: int = 5) -> BatchIdentity:
        return BatchIdentity(
            schema_version=2, fleet_id="demo", vehicle_id="taxi-q", epoch=epoch, seq=seq
        )

    async def q(i: BatchIdentity, received_ms: int = T0) -> tuple[bool, int]:
        r = await store.quarantine_batch(
            identity=i, topic="fleet/demo/taxi-q/batch", payload=b"\x81\xa1v\x02",
            reason="unknown_version", received_ms=received_ms,
        )  # fmt: skip
        return r.new, r.contiguous_seq

    assert await q(ident(2)) == (True, 0)  # seq 1 still missing
    assert await put(store, batch(1, vehicle="taxi-q", epoch=5), T0) == (True, 2)
    assert await q(ident(2)) == (False, 2)  # redelivered: stored once, acked again
    assert await put(store, batch(2, vehicle="taxi-q", epoch=5), T0) == (False, 2)
    assert await q(ident(3)) == (True, 3)
    # seq 0 (reserved) and a seq beyond 2^63 - 1: quarantined without a receipt.
    assert await q(ident(0)) == (True, 3)
    assert await q(ident(2**64 - 1)) == (True, 3)
    assert await q(ident(1, epoch=6)) == (True, 1)
    figures = await store.metrics()
    assert figures["quarantine_total:unknown_version"] == 5
    [s] = await store.vehicle_health("taxi-q")
    assert s.status.quarantined == 5
    assert s.status.duplicates == 2
    assert s.seq_gaps == {}
    assert s.rx_bytes_today == 6 * 4 + 2 * 1000


async def test_two_epochs_told_apart_by_record_times(store: Store) -> None:
    """In both cases the receipts of two epochs of one vehicle interleave; only the record
    times the batches carry tell a restarted agent from two agents."""
    s = 1000

    def spanning(vehicle: str, epoch: int, seq: int, first_ms: int, last_ms: int) -> Batch:
        events = [Event("fcw", first_ms, None, None, None, {}),
                  Event("fcw", last_ms, None, None, None, {})]  # fmt: skip
        return batch(seq, vehicle=vehicle, epoch=epoch, events=events)

    def interleaved(old: list[Batch], new: list[Batch]) -> list[Batch]:
        return [b for pair in zip(old, new, strict=True) for b in pair]

    # Power cut at T0 + 100 s with a backlog: epoch 7's closed batches (records up to
    # T0 + 99 s) drain while epoch 8, started at the restart, sends the records that were
    # staged at the cut (from T0 + 80 s) and new ones.
    drained = [spanning("taxi-r", 7, i + 1, T0 + a * s, T0 + b * s)
               for i, (a, b) in enumerate([(0, 40), (40, 70), (70, 99)])]  # fmt: skip
    restarted = [spanning("taxi-r", 8, i + 1, T0 + a * s, T0 + b * s)
                 for i, (a, b) in enumerate([(80, 110), (110, 130), (130, 150)])]  # fmt: skip
    # Two agents: two epochs with records of the same stretch of time.
    twins = [
        [spanning("taxi-t", epoch, i + 1, T0 + 50 * i * s, T0 + (50 * i + 49) * s)
         for i in range(3)]
        for epoch in (21, 22)
    ]  # fmt: skip
    rx = T0 + 200 * s
    for i, b in enumerate(interleaved(drained, restarted) + interleaved(*twins)):
        assert (await put(store, b, rx + i * s))[0]
    now = rx + 20 * s
    states = {v.status.vehicle: v for v in await store.vehicle_health()}

    def alerted(vehicle: str) -> bool:
        v = states[vehicle]
        return TWO_EPOCHS in {a.kind for a in evaluate_alerts(v, None, now, Thresholds())}

    assert not alerted("taxi-r")
    assert alerted("taxi-t")
    spans = {e.epoch: e for v in states.values() for e in v.epochs}
    assert (spans[7].first_record_ms, spans[7].last_record_ms) == (T0, T0 + 99 * s)
    assert (spans[8].first_record_ms, spans[8].last_record_ms) == (T0 + 80 * s, T0 + 150 * s)
    assert (spans[21].first_rx_ms, spans[21].last_rx_ms) == (rx + 6 * s, rx + 10 * s)
    # A duplicate and an identified quarantined batch widen nothing (their records are
    # stored already, or unknown).
    assert not (await put(store, spanning("taxi-r", 7, 3, T0 + 150 * s, T0 + 160 * s), now))[0]
    await store.quarantine_batch(
        identity=BatchIdentity(
            schema_version=2, fleet_id="demo", vehicle_id="taxi-r", epoch=7, seq=4
        ),
        topic="fleet/demo/taxi-r/batch", payload=b"\x81\xa1v\x02",
        reason="unknown_version", received_ms=now,
    )  # fmt: skip
    [r] = await store.vehicle_health("taxi-r")
    [old] = [e for e in r.epochs if e.epoch == 7]
    assert (old.first_record_ms, old.last_record_ms, old.last_rx_ms) == (T0, T0 + 99 * s, now)


async def test_migration_0003_backfills(tmp_path: Path) -> None:
    """A SQLite database at schema 2 with data: 0003 derives the health state from it."""
    import sqlite3

    from cloud_collector.store import migrations as mig

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute(mig.CREATE_TABLE)
    for m in mig.load("sqlite")[:2]:
        db.executescript(m.sql)
        db.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (m.version, m.name))
    db.executemany(
        "INSERT INTO receipts VALUES ('taxi-1', '7', ?, 'demo', 'batch', 0, 10, 1)",
        [(1,), (2,), (5,)],
    )
    db.execute("INSERT INTO epoch_acks VALUES ('taxi-1', '7', 2)")
    db.executemany(
        "INSERT INTO health (vehicle, time_ms, \"values\") VALUES ('taxi-1', ?, ?)",
        [(T0 + 5, '{"n": 2}'), (T0 + 1, '{"n": 1}')],
    )
    db.execute(
        "INSERT INTO vehicle_status (vehicle, fleet, day, bytes_today, batches_total)"
        " VALUES ('taxi-1', 'demo', '2026-03-01', 30, 3)"
    )
    db.commit()
    db.close()
    store = await open_store(f"sqlite://{path}")
    try:
        [s] = await store.vehicle_health()
        assert s.seq_gaps == {"7": 2}
        assert s.latest_health is not None
        assert (s.latest_health.time_ms, s.latest_health.values) == (T0 + 5, {"n": 2})
        assert (s.rx_day, s.rx_bytes_today, s.rx_month, s.rx_bytes_month) == (
            "2026-03-01", 30, "2026-03", 30
        )  # fmt: skip
    finally:
        await store.close()


async def test_migration_0003_backfills_postgres(
    pg_server: PgHarness,
) -> None:
    import asyncpg

    from cloud_collector.store import migrations as mig

    url = pg_server.create_database(f"old{next(_db_names)}")
    con = await asyncpg.connect(url)
    try:
        await con.execute(mig.CREATE_TABLE)
        for m in mig.load("postgres")[:2]:
            await con.execute(m.sql)
            await con.execute("INSERT INTO schema_migrations VALUES ($1, $2, 0)", m.version, m.name)
        await con.executemany(
            "INSERT INTO receipts VALUES ('taxi-1', '7', $1, 'demo', 'batch', 0, 10, 1)",
            [(1,), (2,), (5,)],
        )
        await con.execute("INSERT INTO epoch_acks VALUES ('taxi-1', '7', 2)")
        await con.executemany(
            "INSERT INTO health (vehicle, time_ms, \"values\") VALUES ('taxi-1', $1, $2)",
            [(T0 + 5, '{"n": 2}'), (T0 + 1, '{"n": 1}')],
        )
        await con.execute(
            "INSERT INTO vehicle_status (vehicle, fleet, day, bytes_today, batches_total)"
            " VALUES ('taxi-1', 'demo', '2026-03-01', 30, 3)"
        )
    finally:
        await con.close()
    store = await open_store(url)
    try:
        [s] = await store.vehicle_health()
        assert s.seq_gaps == {"7": 2}
        assert s.latest_health is not None
        assert (s.latest_health.time_ms, s.latest_health.values) == (T0 + 5, {"n": 2})
        assert (s.rx_day, s.rx_bytes_today, s.rx_month, s.rx_bytes_month) == (
            "2026-03-01", 30, "2026-03", 30
        )  # fmt: skip
    finally:
        await store.close()
