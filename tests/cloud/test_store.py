"""The road-condition store against real SQLite files and a real PostgreSQL (pg_harness)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from cloud_collector.errors import QueryError, StoreError
from cloud_collector.store import CellHour, EventQuery, RoadQuery, Store, open_store
from cloud_collector.store import aggregate as agg
from cloud_collector.store import migrations as mig
from protocol.batch import Batch
from protocol.records import Event, Health, SignalSeries
from tests.support import raw_sql
from tests.support.store_records import GRACE_MS, LAT, LON, T0, batch, east, event, fix


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await open_store(store_url, gap_grace_ms=GRACE_MS)
    try:
        yield s
    finally:
        await s.close()


async def ingest(store: Store, b: Batch, received_ms: int = T0 + 10_000) -> tuple[bool, int]:
    r = await store.ingest(b, topic_channel="batch", payload_bytes=100, received_ms=received_ms)
    return r.new, r.contiguous_seq


async def test_ingest_and_event_queries(store: Store) -> None:
    far = east(LAT, LON, 5_000)
    b = batch(
        1,
        events=[
            event("fcw", T0 + 1, sign=1),
            event("ldw", T0 + 2),
            event("fcw", T0 + 3, *far),
            Event("harsh_braking", T0 + 3, None, None, None, {}),
            event("fcw", T0 + 5),
        ],
        signals=[SignalSeries("vehicle_speed", (T0, T0 + 5), (10.0, None), "km/h")],
        gnss=[fix(T0 + 4)],
        health=[Health(T0 + 5, {"cpu": 0.5})],
    )
    assert await ingest(store, b) == (True, 1)
    page = await store.events(EventQuery())
    assert [e.type for e in page.events] == ["fcw", "ldw", "fcw", "harsh_braking", "fcw"]
    first = page.events[0]
    assert first.attrs == {"sign": 1}
    assert first.epoch == 2**64 - 5
    assert first.h3_12 == agg.cell_at(LAT, LON)
    assert (first.source_bus, first.source_id, first.speed_kmh) == ("cam", 0x700, 36.0)
    assert page.next_cursor is None
    fcw = await store.events(EventQuery(type="fcw"))
    assert len(fcw.events) == 3
    near = await store.events(EventQuery(bbox=(LON - 0.01, LAT - 0.01, LON + 0.01, LAT + 0.01)))
    assert len(near.events) == 3
    window = await store.events(EventQuery(since_ms=T0 + 2, until_ms=T0 + 5))
    assert [e.time_ms for e in window.events] == [T0 + 2, T0 + 3, T0 + 3]
    assert (await store.events(EventQuery(vehicle="other"))).events == []
    # Keyset paging with equal times across a page boundary.
    seen = []
    cursor = None
    while True:
        page = await store.events(EventQuery(limit=2, cursor=cursor))
        seen += [e.id for e in page.events]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 5
    assert len(set(seen)) == 5
    with pytest.raises(QueryError):
        await store.events(EventQuery(cursor="not a cursor!"))
    with pytest.raises(QueryError):
        await store.events(EventQuery(limit=0))


async def test_duplicate_not_doubled(store: Store) -> None:
    b = batch(1)
    assert await ingest(store, b) == (True, 1)
    assert await ingest(store, b, T0 + 20_000) == (False, 1)
    assert len((await store.events(EventQuery())).events) == 1
    status = await store.vehicle("taxi-1")
    assert status is not None
    assert (status.duplicates, status.batches_total, status.last_seen_ms) == (1, 1, T0 + 20_000)
    cells = await store.road_conditions(RoadQuery(min_exposure=0))
    assert sum(sum(c.counts.values()) for c in cells) == 1


async def test_contiguous_seq_with_gaps(store: Store) -> None:
    t = T0 + 10_000
    assert await ingest(store, batch(2), t) == (True, 0)  # seq 1 may still be in flight
    assert await ingest(store, batch(1), t) == (True, 2)
    assert await ingest(store, batch(4), t) == (True, 2)
    assert await ingest(store, batch(3), t) == (True, 4)
    # Seq 5 was evicted on the taxi: 6 arrives, and 5 never does.
    assert await ingest(store, batch(6), t) == (True, 4)
    assert await ingest(store, batch(7), t + GRACE_MS - 1) == (True, 4)
    assert await ingest(store, batch(7), t + GRACE_MS) == (False, 7)  # a re-sent duplicate
    # A new epoch whose first batches were evicted: the oldest received seq starts the run.
    other = 42
    assert await ingest(store, batch(5, epoch=other), t) == (True, 0)
    assert await ingest(store, batch(6, epoch=other), t + GRACE_MS) == (True, 6)
    # Never lower than before.
    assert await ingest(store, batch(1, epoch=other), t + GRACE_MS) == (True, 6)


async def test_aggregates(store: Store) -> None:
    # A straight track east at 10 m/s through several res-10 cells; a fix every 5 s.
    track = [fix(T0 + i * 5_000, *east(LAT, LON, i * 50.0)) for i in range(12)]
    cells = [agg.cell_at(f.lat, f.lon, agg.AGG_RES) for f in track]
    distinct = list(dict.fromkeys(cells))
    assert len(distinct) >= 3
    wipers = SignalSeries("CGW1.CF_Gway_WiperLowSw", (T0,), (1,))
    lanes = SignalSeries("ME_LKA_Left_Lane_A.quality", (T0,), (3,))
    events = [event("fcw", track[0].time_ms + 1, track[0].lat, track[0].lon)]
    await ingest(store, batch(1, gnss=track, signals=[wipers, lanes], events=events))
    # Five more vehicles drive through the first cell, without wipers.
    for n in range(5):
        await ingest(store, batch(1, vehicle=f"taxi-{n + 2}", gnss=track[:1]))
    rows = await store.road_conditions(RoadQuery(min_exposure=1))
    by_cell = {r.cell: r for r in rows}
    assert set(by_cell) == set(distinct)
    first = by_cell[distinct[0]]
    assert first.exposure == 6
    assert first.hour_ms == T0
    assert first.counts == {"fcw": 1}
    assert first.hotspot_rate == pytest.approx(100 / 6)
    assert first.wipers_share == pytest.approx(1 / 6)
    assert first.lane_quality_share == pytest.approx(1 / 6)
    assert first.failsafe_share == 0
    assert first.mean_speed_kmh == pytest.approx(36.0)
    for cell in distinct[1:]:
        assert by_cell[cell].exposure == 1
        assert by_cell[cell].wipers_share == 1
    hot = await store.road_conditions(RoadQuery(min_exposure=5))
    assert [r.cell for r in hot] == [distinct[0]]
    typed = await store.road_conditions(RoadQuery(type="ldw", min_exposure=5))
    assert typed[0].counts == {}
    assert typed[0].hotspot_rate == 0
    bbox = (LON - 0.0001, LAT - 0.0005, LON + 0.0001, LAT + 0.0005)
    assert len(await store.road_conditions(RoadQuery(bbox=bbox))) <= 1
    later = await store.road_conditions(RoadQuery(since_ms=T0 + agg.HOUR_MS))
    assert later == []


async def test_event_counts_accumulate_in_cell_row(store: Store) -> None:
    cell = agg.parent(agg.cell_at(LAT, LON))
    kinds = ["fcw", "fcw", "ldw", "harsh_braking", "fcw", "ldw"]
    for seq, kind in enumerate(kinds, start=1):
        t = T0 + seq * 1000
        await ingest(store, batch(seq, gnss=[fix(t)], events=[event(kind, t)]))
    # Another vehicle: same cell-hour, so its counts merge into the same row.
    await ingest(store, batch(1, vehicle="taxi-9", events=[event("pcw", T0 + 1)]))
    await ingest(store, batch(2, vehicle="taxi-9", gnss=[fix(T0 + 2)]))
    # Another hour of the same cell.
    await ingest(store, batch(3, vehicle="taxi-9", events=[event("fcw", T0 + agg.HOUR_MS)]))
    (row, later) = await store.road_conditions(RoadQuery(min_exposure=0))
    assert (row.cell, row.hour_ms, later.hour_ms) == (cell, T0, T0 + agg.HOUR_MS)
    assert row.counts == {"fcw": 3, "ldw": 2, "harsh_braking": 1, "pcw": 1}
    assert row.exposure == 2
    assert row.hotspot_rate == 100.0 * 7 / 2
    assert row.mean_speed_kmh == 36.0
    assert (later.counts, later.exposure, later.hotspot_rate) == ({"fcw": 1}, 0, None)
    assert (later.wipers_share, later.mean_speed_kmh) == (None, None)
    (typed,) = await store.road_conditions(RoadQuery(type="ldw", min_exposure=1))
    assert (typed.counts, typed.hotspot_rate) == ({"ldw": 2}, 100.0 * 2 / 2)
    # The rows are ordinary CellHour values: equal to, and hashing like, constructed ones.
    rebuilt = CellHour(**{f.name: getattr(row, f.name) for f in dataclasses.fields(CellHour)})
    assert rebuilt == row
    assert repr(rebuilt) == repr(row)
    assert row.counts is not later.counts
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.exposure = 3  # type: ignore[misc]


async def test_upgrade_from_version_1_moves_event_counts(store_url: str) -> None:
    """A database created by migration 0001 (counts in road_events) opens, upgrades and
    answers road queries with its old counts."""
    backend = "sqlite" if store_url.startswith("sqlite") else "postgres"
    (initial,) = [m for m in mig.load(backend) if m.version == 1]
    cell = agg.parent(agg.cell_at(LAT, LON))
    lat, lon = agg.centre(cell)
    setup = [
        mig.CREATE_TABLE,
        initial.sql,
        "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (1, 'initial', 0)",
        "INSERT INTO road_cells (cell, hour_ms, lat, lon, passes, wipers, failsafe, lanes,"
        f" speed_sum, speed_n) VALUES ({cell}, {T0}, {lat}, {lon}, 4, 1, 0, 2, 100.0, 2),"
        f" ({cell}, {T0 + agg.HOUR_MS}, {lat}, {lon}, 3, 0, 0, 0, 0.0, 0)",
        "INSERT INTO road_events (cell, hour_ms, type, n) VALUES"
        f" ({cell}, {T0}, 'fcw', 2), ({cell}, {T0}, 'ldw', 1)",
    ]
    await raw_sql.execute(store_url, setup)
    store = await open_store(store_url)
    try:
        first, second = await store.road_conditions(RoadQuery(min_exposure=1))
        assert (first.counts, first.exposure, first.hotspot_rate) == ({"fcw": 2, "ldw": 1}, 4, 75.0)
        assert (first.wipers_share, first.lane_quality_share, first.mean_speed_kmh) == (
            0.25,
            0.5,
            50.0,
        )
        assert (second.counts, second.hotspot_rate, second.mean_speed_kmh) == ({}, 0.0, None)
        # Ingest keeps adding to the migrated row.
        await ingest(store, batch(1, events=[event("fcw", T0 + 5), event("pcw", T0 + 6)]))
        first, _ = await store.road_conditions(RoadQuery(min_exposure=1))
        assert first.counts == {"fcw": 3, "ldw": 1, "pcw": 1}
        assert first.hotspot_rate == 125.0
    finally:
        await store.close()


async def test_sign_clustering(store: Store) -> None:
    def sign(t: int, metres: float) -> Event:
        return event("tsr_sign", t, *east(LAT, LON, metres), sign_type=30, limit_kmh=30)

    await ingest(store, batch(1, events=[sign(T0, 0.0)]))
    await ingest(store, batch(2, events=[sign(T0 + 1, 10.0)]))
    await ingest(store, batch(1, vehicle="taxi-2", events=[sign(T0 + 2, 5.0)]))
    await ingest(store, batch(3, events=[sign(T0 + 3, 40.0)]))
    clusters = await store.signs(None)
    assert [(c.observations, c.vehicles) for c in clusters] == [(3, 2), (1, 1)]
    first = clusters[0]
    assert agg.haversine_m(first.lat, first.lon, *east(LAT, LON, 5.0)) < 0.5
    assert (first.first_seen_ms, first.last_seen_ms, first.limit_kmh) == (T0, T0 + 2, 30)
    assert first.sign_type == 30
    assert len(await store.signs((LON - 0.0001, LAT - 0.0001, LON + 0.0002, LAT + 0.0001))) == 1


async def test_quarantine_presence_status_metrics(store: Store) -> None:
    await store.quarantine(
        topic="fleet/seoul/taxi-1/batch",
        payload=b"\x00\xffraw",
        reason="bad_zstd",
        received_ms=T0,
        fleet="seoul",
        vehicle="taxi-1",
    )
    await store.quarantine(
        topic="fleet/x", payload=b"", reason="bad_msgpack", received_ms=T0, fleet=None, vehicle=None
    )
    await ingest(store, batch(1), T0 + 60_000)
    await store.set_presence(fleet="seoul", vehicle="taxi-1", online=True, time_ms=T0 + 5)
    await store.set_presence(fleet="seoul", vehicle="taxi-1", online=False, time_ms=T0 + 1)
    status = await store.vehicle("taxi-1")
    assert status is not None
    assert status.online is True
    assert status.quarantined == 1
    assert (status.batches_today, status.bytes_today, status.last_seq) == (1, 100, 1)
    assert status.lag_ms == T0 + 60_000 - (T0 + 1000)
    assert status.last_epoch == 2**64 - 5
    await store.set_presence(fleet="seoul", vehicle="taxi-9", online=False, time_ms=T0)
    assert [v.vehicle for v in await store.vehicles()] == ["taxi-1", "taxi-9"]
    assert await store.vehicle("nobody") is None
    m = await store.metrics()
    assert m["quarantine_total:bad_zstd"] == 1
    assert m["quarantine_total"] == 2
    assert (m["batches_total"], m["vehicles_online"], m["records_total"]) == (1, 1, 1)
    await store.ping()


async def test_quarantine_keeps_raw_payload(store_url: str) -> None:
    store = await open_store(store_url)
    payload = bytes(range(256))
    await store.quarantine(
        topic="t", payload=payload, reason="r", received_ms=1, fleet=None, vehicle=None
    )
    await store.close()
    [(stored,)] = await raw_sql.fetch(store_url, "SELECT payload FROM quarantine")
    assert bytes(stored) == payload


async def test_reopen_keeps_data_and_migrations(store_url: str) -> None:
    for n in range(2):
        store = await open_store(store_url)
        await ingest(store, batch(n + 1))
        await store.close()
    store = await open_store(store_url)
    assert len((await store.events(EventQuery())).events) == 2
    await store.close()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("mysql://x/y", "mysql"),
        ("sqlite://relative.db", "absolute"),
        ("nonsense", "''"),
    ],
)
async def test_bad_url(url: str, match: str) -> None:
    with pytest.raises(StoreError, match=match):
        await open_store(url)


async def test_unknown_version_batches_are_kept_whole_beyond_the_daily_quota(
    store_url: str,
) -> None:
    """A newer agent's batches are valid data the taxi deletes once acknowledged: the
    sender's quarantine quota never turns them into a hash and a count."""
    from cloud_collector.store.base import QUARANTINE_OVER_CAP, QuarantineLimits
    from cloud_collector.validate import UNKNOWN_VERSION
    from protocol import encode_batch, peek_identity

    limits = QuarantineLimits(max_per_sender_day=2, max_bytes_per_sender_day=1 << 20)
    topic = "fleet/seoul/taxi-1/batch"
    payloads = [encode_batch(batch(seq)) for seq in range(1, 6)]
    store = await open_store(store_url)
    try:
        for seq, payload in enumerate(payloads, 1):
            result = await store.quarantine_batch(
                identity=peek_identity(payload),
                topic=topic,
                payload=payload,
                reason=UNKNOWN_VERSION,
                received_ms=T0,
                limits=limits,
            )
            assert result.contiguous_seq == seq
        # Junk from the same sender is still held to its quota, which the batches used up.
        outcome = await store.quarantine(
            topic=topic,
            payload=b"junk",
            reason="bad_msgpack",
            received_ms=T0,
            fleet="seoul",
            vehicle="taxi-1",
            limits=limits,
        )
        assert outcome == QUARANTINE_OVER_CAP
    finally:
        await store.close()
    rows = await raw_sql.fetch(
        store_url, "SELECT reason, payload FROM quarantine ORDER BY received_ms, size"
    )
    assert sorted(bytes(r[1]) for r in rows) == sorted(payloads)
    assert {r[0] for r in rows} == {UNKNOWN_VERSION}


async def test_eviction_notices_let_the_ack_pass_and_a_late_batch_still_counts(
    store_url: str,
) -> None:
    """Without a grace (the default) a missing seq holds the ack however old it is; an
    eviction notice naming it lets the ack pass; should the evicted batch arrive after all,
    its records are stored, not dropped as a duplicate of the notice's receipt."""
    from protocol import eviction_notice

    epoch = 2**64 - 5
    store = await open_store(store_url)
    try:
        for seq in (1, 2, 5):
            await ingest(store, batch(seq), received_ms=T0 + seq)
        assert await ingest(store, batch(6), received_ms=T0 + 10**9) == (True, 2)
        notice = eviction_notice(
            epoch=epoch, first_seq=3, last_seq=4, time_ms=T0 + 4_000, records=2, cause="test"
        )
        assert await ingest(store, batch(7, events=[notice])) == (True, 7)
        # Seq 4 was in flight when the agent evicted it: it arrives after the notice.
        assert await ingest(store, batch(4)) == (True, 7)
        assert await ingest(store, batch(4)) == (False, 7)  # and counts once
        page = await store.events(EventQuery(type="fcw"))
    finally:
        await store.close()
    assert sorted(e.seq for e in page.events) == [1, 2, 4, 5, 6]
