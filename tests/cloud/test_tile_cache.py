"""The cache of encoded vector tiles: bounded by bytes and time (pure), and in the app: a
cached tile equals a freshly made one, a recent period's tile follows a new ingest within
its TTL, and the city's k-anonymous view never shares an entry with the others."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import pytest

from cloud_collector import tiles
from cloud_collector.api import create_app
from cloud_collector.roles import Role
from cloud_collector.store import Store, open_store
from cloud_collector.store import aggregate as agg
from cloud_collector.tile_cache import (
    ENTRY_OVERHEAD,
    RECENT_TTL_MS,
    CachedTile,
    TileCache,
    TileKey,
)
from tests.support.api_client import api_client
from tests.support.auth import bearer, mint
from tests.support.store_records import LAT, LON, T0, batch, east, event, fix

Z = 15
SETTLED = "?since=2023-11-14T00:00:00Z&until=2023-11-15T00:00:00Z"


def _key(x: int, k: int = 0) -> TileKey:
    return TileKey("events", 10, x, 0, 0, 1, None, k)


def test_cache_evicts_the_least_recently_used_beyond_its_bytes() -> None:
    cache = TileCache(max_bytes=3 * (100 + ENTRY_OVERHEAD))
    for x in range(3):
        cache.put(_key(x), CachedTile(b"x" * 100, f'"{x}"', 1_000))
    assert cache.get(_key(0), 0) is not None  # now the most recent
    cache.put(_key(3), CachedTile(b"x" * 100, '"3"', 1_000))
    assert cache.get(_key(1), 0) is None
    assert [cache.get(_key(x), 0) is not None for x in (0, 2, 3)] == [True, True, True]
    assert cache.bytes == 3 * (100 + ENTRY_OVERHEAD)
    cache.put(_key(9), CachedTile(b"x" * 10_000, '"big"', 1_000))  # larger than the cache
    assert cache.get(_key(9), 0) is None
    assert len(cache) == 3


def test_cache_entries_expire_and_views_are_apart() -> None:
    cache = TileCache()
    cache.put(_key(0, k=0), CachedTile(b"all", '"a"', 1_000))
    assert cache.get(_key(0, k=3), 0) is None
    assert cache.get(_key(0, k=0), 999) is not None
    assert cache.get(_key(0, k=0), 1_000) is None
    assert cache.bytes == 0
    with pytest.raises(ValueError, match="max_bytes"):
        TileCache(max_bytes=-1)


@dataclass
class Clock:
    now_ms: int = T0 + 30 * agg.DAY_MS

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite://{tmp_path / 'store.db'}")
    trace = [fix(T0 + i * 1000, *east(LAT, LON, 10.0 * i)) for i in range(30)]
    events = [event("fcw", T0 + 5_000), event("ldw_left", T0 + 9_000)]
    await s.ingest(
        batch(1, gnss=trace, events=events), topic_channel="batch", payload_bytes=100,
        received_ms=T0 + 70_000,
    )  # fmt: skip
    yield s
    await s.close()


def _url(layer: str, query: str = SETTLED) -> str:
    x, y = tiles.tile_of(LON, LAT, Z)
    return f"/tiles/{layer}/{Z}/{x}/{y}.mvt{query}"


def _features(body: bytes, layer: str) -> list[Any]:
    found: list[Any] = mapbox_vector_tile.decode(body).get(layer, {"features": []})["features"]
    return found


async def test_a_cached_tile_equals_a_fresh_one(store: Store) -> None:
    app = create_app(store, clock_ms=Clock())
    async with api_client(app) as c:
        first = [(await c.get(_url(layer))).content for layer in tiles.LAYERS]
        again = [await c.get(_url(layer)) for layer in tiles.LAYERS]
    cache: TileCache = app.state.api.tile_cache
    assert cache.hits == len(tiles.LAYERS)
    assert [r.content for r in again] == first
    assert all(first)
    async with api_client(create_app(store, clock_ms=Clock())) as fresh:
        assert [(await fresh.get(_url(layer))).content for layer in tiles.LAYERS] == first


async def test_a_recent_tile_follows_a_new_ingest_within_its_ttl(store: Store) -> None:
    clock = Clock(now_ms=T0 + 20 * 60_000)  # the hour of T0 is the current one
    app = create_app(store, clock_ms=clock)
    url = _url("road_conditions", "")
    async with api_client(app) as c:
        before = (await c.get(url)).content
        events = [event("fcw", T0 + 60_000 + i * 1_000) for i in range(5)]
        await store.ingest(
            batch(2, gnss=[fix(T0 + 60_000 + i * 1_000) for i in range(5)], events=events),
            topic_channel="batch", payload_bytes=100, received_ms=clock.now_ms,
        )  # fmt: skip
        assert (await c.get(url)).content == before  # within the TTL: the cached tile
        clock.now_ms += RECENT_TTL_MS
        after = (await c.get(url)).content
    total = sum(f["properties"]["events"] for f in _features(after, "road_conditions"))
    assert total == sum(f["properties"]["events"] for f in _features(before, "road_conditions")) + 5


async def test_the_city_view_never_shares_a_cached_tile(store: Store) -> None:
    """One vehicle only: below k, so the city sees nothing, whoever asked first."""
    for first in (Role.ADMIN, Role.CITY):
        app = create_app(store, clock_ms=Clock())
        order = [first, Role.CITY if first is Role.ADMIN else Role.ADMIN]
        bodies: dict[Role, list[bytes]] = {}
        for role in order:
            headers = bearer(await mint(app.state.access, role))
            async with api_client(app, headers=headers) as c:
                bodies[role] = [(await c.get(_url(layer))).content for layer in tiles.LAYERS]
        assert all(bodies[Role.ADMIN])
        assert bodies[Role.CITY] == [b"", b"", b""]
