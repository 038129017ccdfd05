"""Vector tiles over real stores (SQLite and PostgreSQL): the three layers, TileJSON,
ETag and Cache-Control, and 400s for bad tile coordinates."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import mapbox_vector_tile
import pytest

from cloud_collector import tiles
from cloud_collector.api import create_app
from cloud_collector.store import Store, open_store, roads
from cloud_collector.store import aggregate as agg
from cloud_collector.store import migrations as mig
from cloud_collector.store.base import TileQuery
from harness.postgres import PgHarness
from tests.support import raw_sql
from tests.support.api_client import api_client
from tests.support.store_records import LAT, LON, T0, batch, east, event, fix

_db_names = itertools.count()
Z = 15
HOURS = "?since=2023-11-14T00:00:00Z&until=2023-11-15T00:00:00Z"
NOW_MS = T0 + 30 * agg.DAY_MS  # the clock of the app: T0's hours are long settled


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'store.db'}"
    pg: PgHarness = request.getfixturevalue("pg_server")
    return pg.create_database(f"tiles{next(_db_names)}")


def _trace() -> list[Any]:
    """A minute driving east from city hall at 10 m/s, one fix a second."""
    return [fix(T0 + i * 1000, *east(LAT, LON, 10.0 * i)) for i in range(60)]


@pytest.fixture
async def client(store_url: str) -> AsyncIterator[httpx.AsyncClient]:
    store: Store = await open_store(store_url)
    trace = _trace()
    events = [event("fcw", T0 + 5_000), event("ldw_left", T0 + 9_000, *east(LAT, LON, 90))]
    await store.ingest(
        batch(1, gnss=trace, events=events), topic_channel="batch", payload_bytes=100,
        received_ms=T0 + 70_000,
    )  # fmt: skip
    app = create_app(store, clock_ms=lambda: NOW_MS)
    async with api_client(app) as c:
        yield c
    await store.close()


def _xy(z: int = Z) -> str:
    x, y = tiles.tile_of(LON, LAT, z)
    return f"{z}/{x}/{y}"


async def _layer(c: httpx.AsyncClient, layer: str, query: str = HOURS, z: int = Z) -> Any:
    r = await c.get(f"/tiles/{layer}/{_xy(z)}.mvt{query}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    return mapbox_vector_tile.decode(r.content).get(layer, {"features": []})


async def test_road_conditions_cells_with_their_measures(client: httpx.AsyncClient) -> None:
    features = (await _layer(client, "road_conditions"))["features"]
    assert features
    props = features[0]["properties"]
    assert {"cell", "passes", "events", "rate", "period", "res"} <= set(props)
    assert props["res"] == tiles.cell_res(Z)
    assert props["period"] == "2023-11-14T00:00:00.000Z/2023-11-15T00:00:00.000Z"
    assert sum(f["properties"]["events"] for f in features) >= 1
    assert all(f["geometry"]["type"] == "Polygon" for f in features)
    # At zoom 9 the cells are res 7: one parent holds the whole trace.
    coarse = (await _layer(client, "road_conditions", z=9))["features"]
    assert len(coarse) == 1
    assert coarse[0]["properties"]["res"] == 7
    assert coarse[0]["properties"]["passes"] >= sum(f["properties"]["passes"] for f in features)


async def test_events_points_and_type_filter(client: httpx.AsyncClient) -> None:
    features = (await _layer(client, "events"))["features"]
    assert sorted(f["properties"]["type"] for f in features) == ["fcw", "ldw_left"]
    assert all(set(f["properties"]) == {"type", "time_ms"} for f in features)
    assert all(f["geometry"]["type"] == "Point" for f in features)
    only = (await _layer(client, "events", HOURS + "&type=fcw"))["features"]
    assert [f["properties"]["time_ms"] for f in only] == [T0 + 5_000]
    outside = (await _layer(client, "events", "?since=2023-11-15T00:00:00Z"))["features"]
    assert outside == []


async def test_roads_are_lines_along_the_trace(client: httpx.AsyncClient) -> None:
    fine = (await _layer(client, "roads", ""))["features"]
    assert len(fine) >= 10  # the part of the 600 m trace in this ~1 km tile
    assert all(f["geometry"]["type"] == "LineString" for f in fine)
    assert {f["properties"]["res"] for f in fine} == {tiles.road_res(Z)}


async def test_empty_tile_is_an_empty_mvt(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/tiles/road_conditions/{Z}/0/0.mvt{HOURS}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["etag"].startswith('"')


async def test_etag_and_cache_control(client: httpx.AsyncClient) -> None:
    url = f"/tiles/road_conditions/{_xy()}.mvt{HOURS}"
    r = await client.get(url)
    assert r.headers["cache-control"] == "private, max-age=86400"
    again = await client.get(url, headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""
    other = await client.get(url, headers={"If-None-Match": '"other"'})
    assert other.status_code == 200
    # The current hour (the default period ends at the end of it): a short max-age.
    recent = await client.get(f"/tiles/road_conditions/{_xy()}.mvt")
    assert recent.headers["cache-control"] == "private, max-age=60"


async def test_tilejson(client: httpx.AsyncClient) -> None:
    r = await client.get("/tiles/events.json", params={"type": "fcw"})
    assert r.status_code == 200
    doc = r.json()
    assert doc["tilejson"] == "3.0.0"
    assert doc["tiles"] == ["http://t/tiles/events/{z}/{x}/{y}.mvt?type=fcw"]
    assert doc["maxzoom"] == tiles.MAX_ZOOM
    min_lon, min_lat, max_lon, max_lat = doc["bounds"]
    assert min_lon <= LON <= max_lon
    assert min_lat <= LAT <= max_lat
    assert doc["vector_layers"][0]["fields"] == {"type": "String", "time_ms": "Number"}


@pytest.mark.parametrize(
    "path",
    [
        "/tiles/events/17/0/0.mvt",
        "/tiles/events/2/4/0.mvt",
        "/tiles/events/2/0/4.mvt",
        "/tiles/events/z/0/0.mvt",
        "/tiles/events/1/-1/0.mvt",
        "/tiles/events/1/0/1e1.mvt",
        "/tiles/events/1/0/0.mvt?since=yesterday",
        "/tiles/events/1/0/0.mvt?since=2030-01-01T00:00:00Z&until=2029-01-01T00:00:00Z",
        "/tiles/events.json?until=x",
    ],
)
async def test_bad_tiles_are_400(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 400, (r.status_code, r.text)
    assert isinstance(r.json()["detail"], str)


async def test_unknown_layer_is_404(client: httpx.AsyncClient) -> None:
    for path in ("/tiles/nope/0/0/0.mvt", "/tiles/nope.json"):
        r = await client.get(path)
        assert r.status_code == 404
        assert "layer" in r.json()["detail"]


async def test_upgrade_fills_the_roads_from_stored_traces(store_url: str) -> None:
    """A database of migrations 1-6 with GNSS traces gets its roads at the upgrade."""
    backend = "sqlite" if store_url.startswith("sqlite") else "postgres"
    setup = [mig.CREATE_TABLE]
    for m in mig.load(backend):
        if m.version <= 6:
            setup += [
                m.sql,
                "INSERT INTO schema_migrations (version, name, applied_ms)"
                f" VALUES ({m.version}, '{m.name}', 0)",
            ]
    rows = ", ".join(
        f"('taxi-1', {f.time_ms}, {f.lat}, {f.lon}, 3, {agg.cell_at(f.lat, f.lon)})"
        for f in _trace()
    )
    setup.append(f"INSERT INTO gnss (vehicle, time_ms, lat, lon, mode, h3_12) VALUES {rows}")
    await raw_sql.execute(store_url, setup)
    store = await open_store(store_url)
    try:
        bbox = tiles.padded((LON, LAT, LON + 0.01, LAT), 8)
        q = TileQuery(bbox=bbox, res=tiles.STORED_ROAD_RES, since_ms=0, until_ms=0)
        upgraded = await store.tile_roads(q)
        assert {(e.a, e.b) for e in upgraded} == set(roads.edges(_trace()))
    finally:
        await store.close()


def test_road_edges_join_consecutive_fixes_only() -> None:
    trace = _trace()
    found = roads.edges(trace)
    assert len(found) >= 20
    assert all(a < b for a, b in found)
    # A gap longer than ROAD_GAP_MS is not a road.
    apart = [trace[0], fix(trace[0].time_ms + roads.ROAD_GAP_MS + 1, *east(LAT, LON, 20))]
    assert roads.edges(apart) == {}


def test_tile_arithmetic() -> None:
    t = tiles.Tile(Z, *tiles.tile_of(LON, LAT, Z))
    min_lon, min_lat, max_lon, max_lat = tiles.tile_bbox(t)
    assert min_lon <= LON < max_lon
    assert min_lat < LAT <= max_lat
    assert [tiles.cell_res(z) for z in (0, 9, 11, 13, 16)] == [2, 7, 8, 10, 10]
    with pytest.raises(ValueError, match="z must be"):
        tiles.Tile(17, 0, 0)
