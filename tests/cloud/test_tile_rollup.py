"""The per-day road sums (``store/rollup.py``) on both backends: kept at ingest equal to
the cell-hours summed (every hour's, and the k-anonymous hours' only for the city), the
road_conditions tiles of whole days read from them equal to the tiles summed from the
cell-hours (both views, with and without a type), rebuilt for another k at open, and
filled from the stored cell-hours by migration 0011."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import h3
import mapbox_vector_tile
import pytest

from cloud_collector import tiles
from cloud_collector.api import create_app
from cloud_collector.config import AuthConfig
from cloud_collector.roles import Role
from cloud_collector.store import Store, open_store
from cloud_collector.store import aggregate as agg
from cloud_collector.store import migrations as mig
from cloud_collector.store.base import CellTotals, TileQuery
from protocol.batch import Batch
from tests.support import raw_sql
from tests.support.auth import api_client
from tests.support.store_records import LAT, LON, T0, east, event, fix

DAY = agg.DAY_MS
HOUR = agg.HOUR_MS
D = agg.day_of(T0)  # T0 is 22:00 UTC of day D
K = 2
BBOX = tiles.padded((LON - 0.01, LAT - 0.01, LON + 0.02, LAT + 0.01), 7)
CELL_HOUR = "cell, hour_ms, vehicles, passes, wipers, failsafe, lanes, speed_sum, speed_n, counts"
SUMS = ("passes", "wipers", "failsafe", "lanes", "speed_sum", "speed_n", "events_n")


def _drive(vehicle: str, seq: int, start: int, speed_mps: float = 10.0) -> Batch:
    """A minute east from city hall (about 6 res-10 cells), a forward collision warning
    and a lane departure on the way."""
    gnss = [fix(start + i * 1000, *east(LAT, LON, speed_mps * i), speed_mps) for i in range(60)]
    events = [event("fcw", start + 5_000), event("ldw_left", start + 9_000, *east(LAT, LON, 90))]
    return Batch.build(
        fleet_id="seoul", vehicle_id=vehicle, epoch=7, seq=seq, sent_ms=start + 60_000,
        gnss=gnss, events=events,
    )  # fmt: skip


# (vehicle, seq, start): day D 19:00 reaches 2 vehicles (k) with the second, and gets a
# third batch of the first; 21:00 has one vehicle; day D+1 01:00 reaches 2.
DRIVES = [
    ("taxi-1", 1, D + 19 * HOUR),
    ("taxi-2", 1, D + 19 * HOUR + 600_000),
    ("taxi-1", 2, D + 19 * HOUR + 1_200_000),
    ("taxi-3", 1, D + 21 * HOUR),
    ("taxi-1", 3, D + DAY + HOUR),
    ("taxi-2", 2, D + DAY + HOUR + 300_000),
]


async def _ingest(store: Store, drives: list[tuple[str, int, int]]) -> None:
    for i, (vehicle, seq, start) in enumerate(drives):
        b = _drive(vehicle, seq, start, 8.0 + i)
        await store.ingest(b, topic_channel="batch", payload_bytes=100, received_ms=start + DAY)


async def _cell_hours(url: str) -> list[tuple[Any, ...]]:
    rows = await raw_sql.fetch(url, f"SELECT {CELL_HOUR}, events_n, lat, lon FROM road_cells")
    return [(*r[:9], json.loads(r[9]), *r[10:]) for r in rows]


def _summed(rows: list[tuple[Any, ...]], k: int) -> dict[tuple[int, int], dict[str, Any]]:
    """(day, cell) -> the sums of its cell-hours with at least ``k`` vehicles."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for cell, hour, vehicles, *sums, counts, events_n, _, _ in rows:
        if vehicles < k:
            continue
        day = out.setdefault((agg.day_of(hour), cell), defaultdict(int, counts=defaultdict(int)))
        day["hours"] += 1
        for name, value in zip(SUMS, (*sums, events_n), strict=True):
            day[name] += value
        for kind, n in counts.items():
            day["counts"][kind] += n
    return out


async def _day_rows(url: str, k_sums: bool) -> dict[tuple[int, int], dict[str, Any]]:
    p = "k_" if k_sums else ""
    hours = "k_hours" if k_sums else "1"
    columns = ", ".join(f"{p}{c}" for c in (*SUMS, "counts"))
    rows = await raw_sql.fetch(url, f"SELECT day_ms, cell, {hours}, {columns} FROM road_cells_day")
    out = {}
    for day, cell, n_hours, *sums, counts in rows:
        if k_sums and not n_hours:
            continue
        values = dict(zip(SUMS, sums, strict=True))
        out[(day, cell)] = {**values, "counts": json.loads(counts), "hours": n_hours}
    return out


def _same_sums(
    got: dict[tuple[int, int], dict[str, Any]], want: dict[Any, Any], hours: bool
) -> None:
    assert got.keys() == want.keys()
    for key, w in want.items():
        g = got[key]
        assert g["speed_sum"] == pytest.approx(w["speed_sum"], rel=1e-12), key
        names = [n for n in SUMS if n != "speed_sum"] + (["hours"] if hours else [])
        assert {n: g[n] for n in names} == {n: w[n] for n in names}, key
        assert g["counts"] == dict(w["counts"]), key


async def test_day_sums_follow_the_cell_hours_at_ingest(store_url: str) -> None:
    store = await open_store(store_url, k_anonymity=K)
    try:
        await _ingest(store, DRIVES)
    finally:
        await store.close()
    rows = await _cell_hours(store_url)
    assert {r[2] for r in rows} == {1, 2}  # hours below k and at k
    _same_sums(await _day_rows(store_url, False), _summed(rows, 0), hours=False)
    k_sums = await _day_rows(store_url, True)
    _same_sums(k_sums, _summed(rows, K), hours=True)
    # The lone vehicle's hour (21:00) is in no day sum the city reads.
    assert {day for day, _ in k_sums} == {D, D + DAY}
    assert sum(v["passes"] for v in k_sums.values()) < sum(r[3] for r in rows)


async def test_another_k_rebuilds_the_city_sums_at_open(store_url: str) -> None:
    store = await open_store(store_url, k_anonymity=K)
    try:
        await _ingest(store, DRIVES[:4])
    finally:
        await store.close()
    for k in (1, 3):
        store = await open_store(store_url, k_anonymity=k)
        await store.close()
        assert await raw_sql.fetch(store_url, "SELECT k FROM road_cells_day_k") == [(k,)]
        rows = await _cell_hours(store_url)
        _same_sums(await _day_rows(store_url, True), _summed(rows, k), hours=True)
    # Ingest goes on under the rebuilt k (3: no hour reaches it).
    store = await open_store(store_url)
    try:
        await _ingest(store, DRIVES[4:])
    finally:
        await store.close()
    assert await _day_rows(store_url, True) == {}
    _same_sums(await _day_rows(store_url, False), _summed(await _cell_hours(store_url), 0), False)


def _expected(rows: list[tuple[Any, ...]], q: TileQuery) -> list[CellTotals]:
    """What ``tile_cells`` answers, summed here from the cell-hour rows."""
    out: dict[int, list[Any]] = {}
    min_lon, min_lat, max_lon, max_lat = q.bbox
    for cell, hour, vehicles, *sums, counts, events_n, lat, lon in rows:
        if not q.since_ms <= hour < q.until_ms or vehicles < q.min_vehicles:
            continue
        if not (min_lat <= lat <= max_lat and min_lon <= lon <= max_lon):
            continue
        p = h3.str_to_int(h3.cell_to_parent(h3.int_to_str(cell), min(q.res, 10)))
        events = events_n if q.type is None else counts.get(q.type, 0)
        total = out.setdefault(p, [0] * 7)
        for i, v in enumerate((sums[0], events, *sums[1:])):
            total[i] += v
    return [CellTotals(p, *v) for p, v in out.items()]


def _queries() -> Iterator[TileQuery]:
    periods = [
        (D, D + DAY),  # a whole day: its per-day sums
        (D, D + 2 * DAY),  # two whole days
        (D - 2 * HOUR, D + DAY + 2 * HOUR),  # a whole day and hours from the cell-hours
        (D + 18 * HOUR, D + DAY + 2 * HOUR),  # no whole day
    ]
    for (since, until), res, k, kind in (
        (p, r, k, t) for p in periods for r in (7, 10) for k in (0, K, 3) for t in (None, "fcw")
    ):
        yield TileQuery(bbox=BBOX, res=res, since_ms=since, until_ms=until, type=kind,
                        min_vehicles=k)  # fmt: skip


def _by_cell(cells: list[CellTotals]) -> list[tuple[Any, ...]]:
    return sorted((c.cell, c.passes, c.events, c.wipers, c.failsafe, c.lanes, c.speed_n,
                   round(c.speed_sum, 6)) for c in cells)  # fmt: skip


async def test_tile_cells_from_day_sums_equal_the_cell_hours_summed(store_url: str) -> None:
    """Whole days, days with hours around them, no whole day; every view (k 3 is not the
    k the sums hold: the cell-hours); the type filter."""
    store = await open_store(store_url, k_anonymity=K)
    try:
        await _ingest(store, DRIVES)
        rows = await _cell_hours(store_url)
        seen = 0
        for q in _queries():
            got = await store.tile_cells(q)
            assert _by_cell(got) == _by_cell(_expected(rows, q)), q
            seen += bool(got)
        assert seen > 20
    finally:
        await store.close()


def _features(body: bytes) -> list[tuple[Any, ...]]:
    layer = mapbox_vector_tile.decode(body).get("road_conditions", {"features": []})
    out = []
    for f in layer["features"]:
        props = {k: v for k, v in f["properties"].items() if k != "period"}
        floats = {k: round(v, 9) for k, v in props.items() if isinstance(v, float)}
        out.append((json.dumps({**props, **floats}, sort_keys=True), str(f["geometry"])))
    return sorted(out)


async def test_day_tiles_over_http_equal_tiles_of_the_cell_hours(store_url: str) -> None:
    """The tile of day D (per-day sums) and of D until a second before its end (the same
    hours, from the cell-hours), as the admin and as the city."""
    store = await open_store(store_url, k_anonymity=K)
    try:
        await _ingest(store, DRIVES)
        app = create_app(store, clock_ms=lambda: D + 30 * DAY, auth=AuthConfig(k_anonymity=K))
        x, y = tiles.tile_of(LON, LAT, 13)
        day = "since=2023-11-14T00:00:00Z&until=2023-11-15T00:00:00Z"
        hours = "since=2023-11-14T00:00:00Z&until=2023-11-14T23:59:59Z"
        seen: dict[Role, int] = {}
        for role in (Role.ADMIN, Role.CITY):
            async with api_client(app, store.access, role) as c:
                bodies = []
                for query in (day, hours, day + "&type=fcw", hours + "&type=fcw"):
                    r = await c.get(f"/tiles/road_conditions/13/{x}/{y}.mvt?{query}")
                    assert r.status_code == 200, r.text
                    bodies.append(_features(r.content))
                assert bodies[0] == bodies[1]
                assert bodies[2] == bodies[3]
                seen[role] = sum(json.loads(p)["passes"] for p, _ in bodies[0])
        assert 0 < seen[Role.CITY] < seen[Role.ADMIN]  # the lone 21:00 hour: admin only
    finally:
        await store.close()


async def test_migration_fills_the_day_sums_from_stored_cell_hours(store_url: str) -> None:
    """A database of migrations 1-10 with cell-hours gets its day sums at the upgrade;
    the city's are built when a collector opens it with its k."""
    backend = "sqlite" if store_url.startswith("sqlite") else "postgres"
    setup = [mig.CREATE_TABLE]
    for m in mig.load(backend):
        if m.version <= 10:
            setup += [
                m.sql,
                "INSERT INTO schema_migrations (version, name, applied_ms)"
                f" VALUES ({m.version}, '{m.name}', 0)",
            ]
    cells = [agg.cell_at(*east(LAT, LON, 70.0 * i), agg.AGG_RES) for i in range(3)]
    values = []
    for i, (cell, hour) in enumerate((c, h) for c in cells for h in (D, D + HOUR, D + DAY)):
        lat, lon = agg.centre(cell)
        counts = json.dumps({"fcw": i + 1, "ldw_left": 1} if i % 2 else {"fcw": 2})
        values.append(f"({cell}, {hour}, {lat}, {lon}, {10 + i}, {i}, 0, {i // 2}, {40.5 * i},"
                      f" {i}, '{counts}', {i}, {1 + i % 3})")  # fmt: skip
    setup.append(
        "INSERT INTO road_cells (cell, hour_ms, lat, lon, passes, wipers, failsafe, lanes,"
        f" speed_sum, speed_n, counts, events_n, vehicles) VALUES {', '.join(values)}"
    )
    await raw_sql.execute(store_url, setup)
    store = await open_store(store_url)
    await store.close()
    rows = await _cell_hours(store_url)
    assert len(rows) == 9
    _same_sums(await _day_rows(store_url, False), _summed(rows, 0), hours=False)
    assert await raw_sql.fetch(store_url, "SELECT k FROM road_cells_day_k") == [(None,)]
    store = await open_store(store_url, k_anonymity=K)
    await store.close()
    _same_sums(await _day_rows(store_url, True), _summed(rows, K), hours=True)


def test_whole_days_of_a_period() -> None:
    from cloud_collector.store.rollup import whole_days

    assert whole_days(D, D + DAY) == (D, D + DAY)
    assert whole_days(D + 1, D + 2 * DAY + 5) == (D + DAY, D + 2 * DAY)
    assert whole_days(D - HOUR, D + DAY - 1) is None
    assert whole_days(D + HOUR, D + DAY + HOUR) is None
    assert agg.day_of(-1) == -DAY
    assert agg.day_of(D + DAY - 1) == D
