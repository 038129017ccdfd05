"""``/v1/road-conditions`` in pages over real stores (SQLite and PostgreSQL): every
cell-hour exactly once, in (hour, cell) order, following the next links."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cloud_collector.api import create_app
from cloud_collector.store import RoadQuery, Store, open_store
from cloud_collector.store import aggregate as agg
from harness.postgres import PgHarness
from tests.support.api_client import api_client
from tests.support.store_records import LAT, LON, T0, batch, east, fix

_db_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path / 'store.db'}"
    else:
        pg: PgHarness = request.getfixturevalue("pg_server")
        url = pg.create_database(f"paging{next(_db_names)}")
    s = await open_store(url)
    # Two hours of a taxi driving 1 km east and back, once each hour: many cell-hours.
    for hour in range(2):
        start = T0 + hour * agg.HOUR_MS
        trace = [fix(start + i * 1000, *east(LAT, LON, 10.0 * i)) for i in range(100)]
        await s.ingest(
            batch(hour + 1, gnss=trace, events=[]), topic_channel="batch", payload_bytes=100,
            received_ms=start + 200_000,
        )  # fmt: skip
    yield s
    await s.close()


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
