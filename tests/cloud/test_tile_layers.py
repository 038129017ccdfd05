"""The roads and events tile layers against references computed here from the stored rows
(both backends, the unrestricted and the city's view), the roads roll-up against grouping
``fleet_roads`` (at ingest and at the upgrade), and cached tiles answered before routing
with the route's own headers, limits and audit entry."""

from __future__ import annotations

import ast
import math
import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import h3
import httpx
import mapbox_vector_tile
import pytest

from cloud_collector import tiles
from cloud_collector.api import create_app
from cloud_collector.config import AuthConfig, HttpConfig
from cloud_collector.privacy import city_time_ms
from cloud_collector.roles import Role
from cloud_collector.routes.tile_hits import TileHits
from cloud_collector.store import Store, open_store, roads
from cloud_collector.store import aggregate as agg
from cloud_collector.store import migrations as mig
from cloud_collector.store.base import EventPoint, RoadEdge
from protocol.records import Event, GnssFix
from tests.support import raw_sql
from tests.support.auth import api_client
from tests.support.store_records import LAT, LON, T0, batch, event

K = AuthConfig().k_anonymity
PERIOD = {"since": "2023-11-14T00:00:00Z", "until": "2023-11-15T00:00:00Z"}
NOW_MS = T0 + 30 * agg.DAY_MS  # the app's clock: the period is long settled
TYPES = ("fcw", "ldw_left", "hmw", "pcw")
# Two routes driven by K vehicles each (k-anonymous), one by a lone vehicle (not).
DRIVERS = [(f"taxi-{r}{n}", r) for r in (1, 2) for n in range(K)] + [("taxi-lone", 3)]
ZOOMS = range(9, 16)


def _walk(route: int, start_ms: int) -> list[GnssFix]:
    """Three minutes of one-second fixes at 12 m/s on a random walk near city hall."""
    rng = random.Random(route)
    lat, lon, heading = LAT + rng.uniform(-0.005, 0.005), LON, rng.choice((0.0, 90.0))
    out = []
    for i in range(180):
        if rng.random() < 0.03:
            heading = (heading + rng.choice((90.0, -90.0))) % 360
        lat += 12.0 * math.cos(math.radians(heading)) / agg.M_PER_DEG_LAT
        lon += (
            12.0
            * math.sin(math.radians(heading))
            / (agg.M_PER_DEG_LAT * math.cos(math.radians(lat)))
        )
        out.append(GnssFix(start_ms + i * 1000, lat, lon, 3, speed_mps=12.0))
    return out


async def _seed(store: Store) -> None:
    """Each driver's walk in three batches of a minute, an event every 7 s (unique
    times: the drivers start 7 ms apart)."""
    seq = 0
    for n, (vehicle, route) in enumerate(DRIVERS):
        fixes = _walk(route, T0 + 3_600_000 + n * 7)
        for part in range(3):
            seq += 1
            gnss = fixes[part * 60 : (part + 1) * 60]
            events: list[Event] = [
                event(TYPES[i % len(TYPES)], f.time_ms, f.lat, f.lon)
                for i, f in enumerate(gnss) if i % 7 == n % 7
            ]  # fmt: skip
            await store.ingest(
                batch(seq, vehicle=vehicle, gnss=gnss, events=events),
                topic_channel="batch", payload_bytes=100, received_ms=T0 + 4_000_000,
            )  # fmt: skip


@pytest.fixture
async def seeded(store_url: str) -> AsyncIterator[Store]:
    store = await open_store(store_url)
    try:
        await _seed(store)
        yield store
    finally:
        await store.close()


def _grouped(rows: list[tuple[Any, ...]], res: int) -> Counter[tuple[int, int]]:
    """``fleet_roads`` rows (a, b, passes) grouped to res-``res`` parents by the h3
    library (not the store's bit arithmetic)."""
    out: Counter[tuple[int, int]] = Counter()
    for a, b, passes in rows:
        pa, pb = agg.parent(int(a), res), agg.parent(int(b), res)
        if pa != pb:
            out[(min(pa, pb), max(pa, pb))] += int(passes)
    return out


async def _rollup(url: str) -> dict[int, Counter[tuple[int, int]]]:
    out: dict[int, Counter[tuple[int, int]]] = {r: Counter() for r in roads.ROLLUP_RES}
    for res, a, b, passes in await raw_sql.fetch(
        url, "SELECT res, a, b, passes FROM fleet_road_rollup"
    ):
        out[int(res)][(int(a), int(b))] = int(passes)
    return out


def test_the_rollup_holds_every_coarse_resolution_of_the_roads_tiles() -> None:
    coarse = {tiles.road_res(z) for z in range(tiles.MAX_ZOOM + 1)} - {tiles.STORED_ROAD_RES}
    assert tuple(sorted(coarse)) == roads.ROLLUP_RES


async def test_the_rollup_kept_at_ingest_equals_grouping_fleet_roads(
    seeded: Store, store_url: str
) -> None:
    stored = await raw_sql.fetch(store_url, "SELECT a, b, passes FROM fleet_roads")
    rollup = await _rollup(store_url)
    for res in roads.ROLLUP_RES:
        assert rollup[res] == _grouped(stored, res), res
    assert sum(rollup[11].values()) > len(rollup[11])  # shared routes: edges add up
    # The tile query's padding: a row's position is near both of its parents' centres.
    for res, a, b, lat, lon in await raw_sql.fetch(
        store_url, "SELECT res, a, b, lat, lon FROM fleet_road_rollup"
    ):
        reach = tiles.ROLLUP_PAD_EDGES * h3.average_hexagon_edge_length(int(res), unit="m")
        for cell in (int(a), int(b)):
            assert h3.great_circle_distance((lat, lon), agg.centre(cell), unit="m") < reach


async def test_the_upgrade_builds_the_rollup_from_fleet_roads(store_url: str) -> None:
    backend = "sqlite" if store_url.startswith("sqlite") else "postgres"
    setup = [mig.CREATE_TABLE]
    for m in mig.load(backend):
        if m.version < 12:
            setup += [
                m.sql,
                "INSERT INTO schema_migrations (version, name, applied_ms)"
                f" VALUES ({m.version}, '{m.name}', 0)",
            ]
    merged: Counter[tuple[int, int]] = Counter()
    for route in (1, 1, 2, 3):
        for key, e in roads.edges(_walk(route, T0)).items():
            merged[key] += e.passes
    values = ", ".join(f"({a}, {b}, {LAT}, {LON}, {n}, {T0})" for (a, b), n in merged.items())
    setup.append(f"INSERT INTO fleet_roads (a, b, lat, lon, passes, last_ms) VALUES {values}")
    await raw_sql.execute(store_url, setup)
    store = await open_store(store_url)
    await store.close()
    rollup = await _rollup(store_url)
    rows = [(a, b, n) for (a, b), n in merged.items()]
    for res in roads.ROLLUP_RES:
        assert rollup[res] == _grouped(rows, res), res


def test_a_box_is_covered_by_the_parents_of_every_cell_in_it() -> None:
    rng = random.Random(5)
    for size in (0.0005, 0.005, 0.05):
        lat0, lon0 = LAT + rng.uniform(-0.1, 0.1), LON + rng.uniform(-0.1, 0.1)
        box = (lon0, lat0, lon0 + size, lat0 + size)
        cells = agg.covering(box, 8, 10_000)
        assert cells is not None
        for _ in range(2_000):
            lat, lon = rng.uniform(box[1], box[3]), rng.uniform(box[0], box[2])
            assert agg.parent(agg.cell_at(lat, lon), 8) in cells
    assert agg.covering((LON, LAT, LON + 1.0, LAT + 1.0), 8, 128) is None  # ~10^4 cells


def _tiles_around(z: int) -> list[tiles.Tile]:
    """The tile of city hall and its eight neighbours (rows cut by their borders)."""
    x, y = tiles.tile_of(LON, LAT, z)
    return [tiles.Tile(z, x + dx, y + dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)]


def _decoded(body: bytes, layer: str) -> list[str]:
    """The features of an MVT (geometry and properties), regardless of their order."""
    features = mapbox_vector_tile.decode(body).get(layer, {"features": []})["features"]
    return sorted(repr((f["geometry"], sorted(f["properties"].items()))) for f in features)


@pytest.fixture
async def clients(seeded: Store) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    app = create_app(seeded, clock_ms=lambda: NOW_MS)
    async with (
        api_client(app, seeded.access, Role.ADMIN) as admin,
        api_client(app, seeded.access, Role.CITY) as city,
    ):
        yield {"admin": admin, "city": city}


def _ends_inside(feature: str) -> bool:
    """Whether a decoded line (``_decoded``) has an end inside the tile proper."""
    points = ast.literal_eval(feature)[0]["coordinates"]
    return any(0 <= x <= tiles.EXTENT and 0 <= y <= tiles.EXTENT for x, y in points)


@pytest.mark.parametrize("who", ["admin", "city"])
async def test_roads_tiles_equal_grouping_fleet_roads(
    clients: dict[str, httpx.AsyncClient], store_url: str, who: str
) -> None:
    """Zooms 9-13 (the roll-up): every line with an end in the tile, with all its passes,
    and in the margin only such lines; 14-15 (the stored edges): as before, the edges
    with a fix in the padded tile."""
    k = K if who == "city" else 0
    stored = await raw_sql.fetch(store_url, "SELECT a, b, passes, lat, lon FROM fleet_roads")
    shown = 0
    for z in ZOOMS:
        res = tiles.road_res(z)
        for t in _tiles_around(z):
            box = tiles.padded(tiles.tile_bbox(t), res)
            rows = [
                (a, b, n) for a, b, n, lat, lon in stored
                if res < 12 or (box[1] <= lat <= box[3] and box[0] <= lon <= box[2])
            ]  # fmt: skip
            edges = [RoadEdge(a, b, n) for (a, b), n in _grouped(rows, res).items() if n >= k]
            want = _decoded(tiles.encode("roads", tiles.road_features(t, edges, res)), "roads")
            r = await clients[who].get(f"/tiles/roads/{t.z}/{t.x}/{t.y}.mvt")
            assert r.status_code == 200, r.text
            got = _decoded(r.content, "roads")
            if res < 12:
                assert set(got) <= set(want), (who, t)
                want = [f for f in want if _ends_inside(f)]
                got = [f for f in got if _ends_inside(f)]
            assert got == want, (who, t)
            shown += len(want)
    assert shown > 100


async def _expected_events(url: str, t: tiles.Tile, k: int, type: str | None) -> bytes:
    """The tile as the latest ``MAX_TILE_EVENTS`` events of the period in the tile's
    box; for the city (``k``) only k-anonymous cell-hours', on their cell's centre, the
    time to the minute."""
    rows = await raw_sql.fetch(url, "SELECT time_ms, type, lat, lon, h3_12 FROM events")
    sql = f"SELECT cell, hour_ms FROM road_cells WHERE vehicles >= {k}"
    enough = {(int(c), int(h)) for c, h in await raw_sql.fetch(url, sql)}
    lo, hi = T0 - T0 % agg.DAY_MS, T0 - T0 % agg.DAY_MS + agg.DAY_MS
    box = tiles.tile_bbox(t)
    points = []
    for time_ms, kind, lat, lon, cell in sorted(rows, key=lambda r: -int(r[0])):
        if not (lo <= time_ms < hi and box[1] <= lat <= box[3] and box[0] <= lon <= box[2]):
            continue
        if type is not None and kind != type:
            continue
        if k:
            parent = agg.parent(int(cell))
            if (parent, agg.hour_of(int(time_ms))) not in enough:
                continue
            points.append(EventPoint(city_time_ms(int(time_ms)), kind, *agg.centre(parent)))
        else:
            points.append(EventPoint(int(time_ms), kind, lat, lon))
    return tiles.encode("events", tiles.event_features(t, points[: tiles.MAX_TILE_EVENTS]))


@pytest.mark.parametrize("who", ["admin", "city"])
async def test_events_tiles_equal_the_latest_events_of_their_box(
    clients: dict[str, httpx.AsyncClient], store_url: str, who: str
) -> None:
    k = K if who == "city" else 0
    shown = 0
    for z in ZOOMS:
        for t in _tiles_around(z):
            for type in (None, "fcw"):
                params = PERIOD if type is None else {**PERIOD, "type": type}
                r = await clients[who].get(f"/tiles/events/{t.z}/{t.x}/{t.y}.mvt", params=params)
                assert r.status_code == 200, r.text
                want = await _expected_events(store_url, t, k, type)
                assert _decoded(r.content, "events") == _decoded(want, "events"), (who, t, type)
                shown += len(_decoded(want, "events"))
    assert shown > 100


async def test_a_cached_tile_is_answered_as_the_route_answers_it(seeded: Store) -> None:
    app = create_app(
        seeded, clock_ms=lambda: NOW_MS, http=HttpConfig(rate_per_s=0.001, rate_burst=3)
    )
    classes: list[Any] = [m.cls for m in app.user_middleware]
    assert classes[-1] is TileHits  # inside the authentication
    cache = app.state.api.tile_cache
    x, y = tiles.tile_of(LON, LAT, 13)
    url = f"/tiles/events/13/{x}/{y}.mvt"
    async with (
        api_client(app, seeded.access, Role.CITY) as city,
        api_client(app, seeded.access, Role.ADMIN) as admin,
    ):
        made = await city.get(url, params=PERIOD)  # a miss: the route makes it
        hit = await city.get(url, params=PERIOD)
        assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)
        assert made.status_code == hit.status_code == 200
        assert made.content == hit.content != b""
        assert dict(made.headers) == dict(hit.headers)
        assert hit.headers["cache-control"] == "private, max-age=86400"
        assert hit.headers["x-content-type-options"] == "nosniff"  # the guard's headers
        etag = {"If-None-Match": hit.headers["etag"]}
        same = await city.get(url, params=PERIOD, headers=etag)
        assert (same.status_code, same.content) == (304, b"")
        assert same.headers["etag"] == hit.headers["etag"]
        # The rate limit holds for hits too (a burst of 3, no refill).
        assert (await city.get(url, params=PERIOD)).status_code == 429
        anonymous = await city.get(url, params=PERIOD, headers={"Authorization": ""})
        assert anonymous.status_code == 401
        other = await admin.get(url, params=PERIOD)  # another view: its own entry
        assert other.status_code == 200
        assert len(cache) == 2
        assert other.content != hit.content
        entries = (await admin.get("/v1/audit")).json()["entries"]
    routes = [(e["role"], e["route"], e["status"]) for e in entries]
    tile = "/tiles/{layer}/{z}/{x}/{y}.mvt"
    assert routes[:5] == [("city", tile, s) for s in (200, 200, 304, 429)] + [("admin", tile, 200)]
