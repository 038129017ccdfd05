"""``/v1/road-conditions`` and the OGC road-conditions collection in pages over real stores
(SQLite and PostgreSQL): every cell-hour exactly once, in (hour, cell) order, following
the next links; the pages put together are the whole answer, and the city's are
k-anonymous."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import h3
import httpx
import pytest

from cloud_collector.api import create_app
from cloud_collector.config import AuthConfig
from cloud_collector.geojson import road_feature
from cloud_collector.roles import Role
from cloud_collector.store import RoadQuery, Store, open_store
from cloud_collector.store import aggregate as agg
from cloud_collector.store.reads import cell_cursor
from harness.postgres import PgHarness
from protocol.records import GnssFix
from tests.support.api_client import api_client
from tests.support.auth import bearer, mint
from tests.support.store_records import LAT, LON, T0, batch, east, fix

_db_names = itertools.count()
K = 2  # the city's k-anonymity in these tests
SECOND_TAXI_FIXES = 50
V1 = "/v1/road-conditions"
OGC = "/ogc/collections/road-conditions/items"


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path / 'store.db'}"
    else:
        pg: PgHarness = request.getfixturevalue("pg_server")
        url = pg.create_database(f"paging{next(_db_names)}")
    s = await open_store(url)
    # Two hours of a taxi driving 1 km east, once each hour: many cell-hours. In the first
    # hour a second taxi drives the first half of the way: only those cell-hours have K
    # vehicles.
    for hour in range(2):
        start = T0 + hour * agg.HOUR_MS
        await s.ingest(
            batch(hour + 1, gnss=_trace(start), events=[]), topic_channel="batch",
            payload_bytes=100, received_ms=start + 200_000,
        )  # fmt: skip
    second = batch(1, vehicle="taxi-2", gnss=_trace(T0)[:SECOND_TAXI_FIXES], events=[])
    await s.ingest(second, topic_channel="batch", payload_bytes=100, received_ms=T0 + 200_000)
    yield s
    await s.close()


def _trace(start: int) -> list[GnssFix]:
    return [fix(start + i * 1000, *east(LAT, LON, 10.0 * i)) for i in range(100)]


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(create_app(store)) as c:
        yield c


def _key(feature: dict[str, object]) -> tuple[str, str]:
    props = feature["properties"]
    assert isinstance(props, dict)
    return props["hour"], props["h3"]


async def test_pages_cover_every_cell_hour_once(client: httpx.AsyncClient, store: Store) -> None:
    everything = await store.road_conditions(RoadQuery())
    assert len(everything) > 10
    r = await client.get("/v1/road-conditions", params={"limit": "3", "min_exposure": "1"})
    seen: list[tuple[str, str]] = []
    for _ in range(100):
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["features"]) <= 3
        seen += [_key(f) for f in body["features"]]
        if body["next_cursor"] is None:
            assert body["links"] == []
            assert "link" not in r.headers
            break
        (link,) = body["links"]
        assert link["rel"] == "next"
        assert r.headers["link"] == f'<{link["href"]}>; rel="next"'
        r = await client.get(link["href"])
    assert len(seen) == len(set(seen)) == len(everything)
    assert seen == sorted(seen)


async def test_no_cursor_is_the_first_page(client: httpx.AsyncClient, store: Store) -> None:
    first = (await client.get("/v1/road-conditions")).json()
    assert first["next_cursor"] is None  # fewer cells than the default page
    assert len(first["features"]) == len(await store.road_conditions(RoadQuery()))
    page = await store.road_conditions(RoadQuery(limit=2))
    assert len(page) == 2


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "10001"}, {"limit": "x"}, {"cursor": "Zm9v"}, {"cursor": "!"}],
)
async def test_bad_paging_is_400(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    r = await client.get("/v1/road-conditions", params=params)
    assert r.status_code == 400, r.text
    assert isinstance(r.json()["detail"], str)


@pytest.fixture
async def clients(store: Store) -> AsyncIterator[dict[Role, httpx.AsyncClient]]:
    app = create_app(store, auth=AuthConfig(k_anonymity=K))
    city = bearer(await mint(store.access, Role.CITY))
    async with api_client(app) as admin, api_client(app, headers=city) as city_client:
        yield {Role.ADMIN: admin, Role.CITY: city_client}


async def _read_all(c: httpx.AsyncClient, path: str, params: dict[str, str]) -> list[Any]:
    """Every feature of every page, following the next links (at most 100 pages)."""
    features: list[Any] = []
    r = await c.get(path, params=params)
    for _ in range(100):
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["features"]) <= int(params["limit"])
        features += body["features"]
        following = [link["href"] for link in body["links"] if link["rel"] == "next"]
        if not following:
            return features
        r = await c.get(following[0])
    raise AssertionError(f"{path}: more than 100 pages")


@pytest.mark.parametrize("role", [Role.ADMIN, Role.CITY])
@pytest.mark.parametrize("path", [V1, OGC])
async def test_pages_put_together_are_the_whole_answer(
    clients: dict[Role, httpx.AsyncClient], store: Store, role: Role, path: str
) -> None:
    params = {"limit": "3"} | ({"min_exposure": "0"} if path == V1 else {})
    got = await _read_all(clients[role], path, params)
    k = K if role is Role.CITY else 0
    whole = await store.road_conditions(RoadQuery(min_vehicles=k))
    assert got == json.loads(json.dumps([road_feature(c) for c in whole]))
    everything = await store.road_conditions(RoadQuery())
    assert len(got) == len(everything) if role is Role.ADMIN else 0 < len(got) < len(everything)


@pytest.mark.parametrize("path", [V1, OGC])
async def test_the_city_pages_show_only_cell_hours_of_k_vehicles(
    clients: dict[Role, httpx.AsyncClient], path: str
) -> None:
    # The cell-hours both taxis drove: the first hour's cells of the second taxi's fixes.
    shared = {
        f"{h3.int_to_str(agg.cell_at(f.lat, f.lon, agg.AGG_RES))}@{T0}"
        for f in _trace(T0)[:SECOND_TAXI_FIXES]
    }
    params = {"limit": "2"} | ({"min_exposure": "0"} if path == V1 else {})
    city = await _read_all(clients[Role.CITY], path, params)
    assert [f["id"] for f in city] == sorted(shared, key=lambda i: (i.split("@")[1], i))
    admin = await _read_all(clients[Role.ADMIN], path, params)
    assert {f["id"] for f in admin} > shared


async def test_a_cursor_pages_within_the_period_and_one_before_it_is_no_bound(
    store: Store,
) -> None:
    period = RoadQuery(since_ms=T0, until_ms=T0 + 2 * agg.HOUR_MS)
    whole = await store.road_conditions(period)
    pages, cursor = [], None
    for _ in range(100):
        page = await store.road_conditions(dataclasses.replace(period, limit=3, cursor=cursor))
        pages += page
        if len(page) < 3:
            break
        cursor = cell_cursor(page[-1])
    assert pages == whole
    second_hour = RoadQuery(since_ms=T0 + agg.HOUR_MS)
    before = cell_cursor(whole[0])  # a cell-hour of the first hour
    after_cursor = dataclasses.replace(second_hour, cursor=before)
    assert await store.road_conditions(after_cursor) == await store.road_conditions(second_hour)
