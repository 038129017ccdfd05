"""Benchmark: vector tiles and the paged road-conditions query over HTTP, on the
10-million-event city data set, on PostgreSQL and on SQLite.

Run (starts its own PostgreSQL via harness/postgres.py and loads it as
``bench.road_query`` does, unless --url names a database that ``bench.road_query`` or this
benchmark loaded before)::

    .venv/bin/python -m bench.tiles --events 10000000

Data: the events and cell-hours of ``bench.road_query`` (Seoul, 30 days), plus the roads
layer's table from synthetic drives (``--drives`` random walks of 200 one-second fixes at
12 m/s through ``roads.edges``, the function ingest uses) and its roll-up per coarse
resolution (built from it by ``roads.rollup_rebuild_sql``, as migration 0012 does). The
SQLite database is a copy of the PostgreSQL one (road cells, events, roads), made through
the store's own schema.

The collector's app (``create_app`` over ``open_store``) is served by uvicorn in a child
process on 127.0.0.1; the client is one httpx client (``--token``, or ``COLLECTOR_TOKEN``,
is sent as a bearer token; without one, a token of ``--role``, admin by default, is
minted into the store; ``--role city`` measures the city's k-anonymous view). Period:
one day (day 10 of 30). Each backend is measured twice, by two collector processes:

* ``cold``: the collector's tile cache off, so every tile is made from the store:
  - tile: ``--tile-runs`` distinct tiles of each layer at random places in the city, zooms
    from the one that fits the city on the screen to four beyond, one at a time:
    p50/p95/max;
  - screen: the tiles of all three layers that a 1920x1080 view of the whole city needs
    at the zoom that fits it (512-pixel tiles), fetched 6 at a time as a browser does,
    from first request to last byte: p50/p95/max over ``--screen-runs``;
  - first page: ``/v1/road-conditions`` for the whole city and the day (``min_exposure``
    5), default page size: p50/p95/max; with ``--full-read`` one full read following the
    next links (pages, cell-hours, seconds);
* ``warm``: the collector with its tile cache; one screen (``first_pass_screen``: the
  cache empty, the same work as cold) and one pass over the tiles fill it, then the same
  tile and screen figures.

Beside each wall-clock figure, ``server_cpu_ms``: the collector process's own CPU time
per request (per screen), less sensitive to other load on the machine than wall time
(the database's own CPU is not in it); and the load average at the end.

A SQLite copy can be kept and reused with ``--sqlite-db PATH``; ``--no-postgres`` then
measures SQLite alone. ``--store-paths`` adds, per backend, the ``road_conditions`` tile
query alone for the same tiles from the per-day sums and from the cell-hours
(``store_paths``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.road_query import DAYS, SEOUL, START_MS, load, on_postgres
from cloud_collector import tiles
from cloud_collector.config import AuthConfig
from cloud_collector.store import aggregate as agg
from cloud_collector.store import open_store, roads, rollup
from cloud_collector.store.base import TileQuery
from protocol.batch import Batch
from protocol.records import Event, FrameRef, GnssFix

DAY_MS = agg.DAY_MS
SCREEN = (1920, 1080)
TILE_PX = 512
CONCURRENCY = 6
STEPS = 200
SPEED_MPS = 12.0
TIMEOUT_S = 120.0


def _walk(rng: random.Random, start_ms: int) -> Iterator[GnssFix]:
    lat = rng.uniform(SEOUL[1], SEOUL[3])
    lon = rng.uniform(SEOUL[0], SEOUL[2])
    heading = rng.choice((0.0, 90.0, 180.0, 270.0))
    for i in range(STEPS):
        if rng.random() < 0.02:
            heading = (heading + rng.choice((90.0, -90.0))) % 360
        rad = math.radians(heading)
        lat += SPEED_MPS * math.cos(rad) / agg.M_PER_DEG_LAT
        lon += SPEED_MPS * math.sin(rad) / (agg.M_PER_DEG_LAT * math.cos(math.radians(lat)))
        yield GnssFix(start_ms + i * 1000, lat, lon, 3)


def road_rows(drives: int) -> list[tuple[int, int, float, float, int, int]]:
    rng = random.Random(7)
    merged: dict[tuple[int, int], roads.EdgeSum] = {}
    for d in range(drives):
        for key, e in roads.edges(_walk(rng, START_MS + d * 1000)).items():
            found = merged.setdefault(key, e)
            if found is not e:
                found.passes += e.passes
    return [(a, b, e.lat, e.lon, e.passes, e.last_ms) for (a, b), e in sorted(merged.items())]


async def load_roads(url: str, drives: int) -> int:
    rows = road_rows(drives)
    con = await asyncpg.connect(url)
    try:
        await con.execute("DELETE FROM fleet_roads")
        await con.copy_records_to_table(
            "fleet_roads", records=rows, columns=["a", "b", "lat", "lon", "passes", "last_ms"]
        )
        # The roll-up per coarse resolution, as migration 0012 builds it from fleet_roads.
        await con.execute("DELETE FROM fleet_road_rollup")
        await con.execute(roads.rollup_rebuild_sql("LEAST", "GREATEST"))
        await con.execute("VACUUM ANALYZE fleet_roads")
        await con.execute("VACUUM ANALYZE fleet_road_rollup")
    finally:
        await con.close()
    return len(rows)


COPIED = {
    "road_cells": "cell, hour_ms, lat, lon, passes, wipers, failsafe, lanes, speed_sum,"
    " speed_n, counts, events_n, vehicles",
    "events": "id, time_ms, vehicle, fleet, type, attrs, lat, lon, h3_12, speed_kmh,"
    " source_bus, source_id, epoch, seq",
    "fleet_roads": "a, b, lat, lon, passes, last_ms",
    "fleet_road_rollup": "res, a, b, lat, lon, passes",
    "road_cells_day": ", ".join(rollup.DAY_COLUMNS),
    "road_cells_day_k": "one, k",
}


async def copy_to_sqlite(pg_url: str, path: Path, tables: tuple[str, ...] = (*COPIED,)) -> float:
    """The PostgreSQL bench ``tables`` into a SQLite store at ``path`` (its own schema)."""
    started = time.monotonic()
    store = await open_store(f"sqlite://{path}")
    await store.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    # Indexes are built once after the copy, not kept up row by row.
    indexes = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        f" AND tbl_name IN ({', '.join('?' * len(COPIED))})",
        tuple(COPIED),
    ).fetchall()
    for name, _ in indexes:
        db.execute(f"DROP INDEX {name}")
    con = await asyncpg.connect(pg_url)
    try:
        for table in tables:
            columns = COPIED[table]
            marks = ", ".join("?" * len(columns.split(",")))
            sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
            cast = columns.replace("counts", "counts::text").replace("attrs", "attrs::text")
            db.execute(f"DELETE FROM {table}")  # the rows a new store starts with
            async with con.transaction():
                chunk: list[tuple[Any, ...]] = []
                async for r in con.cursor(f"SELECT {cast} FROM {table}", prefetch=100_000):
                    chunk.append(tuple(r))
                    if len(chunk) == 50_000:
                        db.executemany(sql, chunk)
                        chunk.clear()
                db.executemany(sql, chunk)
            db.commit()
            print(f"  sqlite: {table} copied at {time.monotonic() - started:.0f} s", flush=True)
        for _, sql in indexes:
            db.execute(sql)
        print(f"  sqlite: indexes built at {time.monotonic() - started:.0f} s", flush=True)
        db.execute("ANALYZE")
        db.commit()
    finally:
        await con.close()
        db.close()
    return time.monotonic() - started


def _serve(store_url: str, port: int, cache_bytes: int | None) -> None:
    """The collector's app on 127.0.0.1:``port``; ``cache_bytes``: the tile cache's size
    (0: no cache, every tile made from the store; None: the app's default)."""
    import dataclasses

    import uvicorn

    from cloud_collector.api import create_app
    from cloud_collector.tile_cache import TileCache

    async def main() -> None:
        store = await open_store(store_url)
        app = create_app(store)
        if cache_bytes is not None:
            app.state.api = dataclasses.replace(app.state.api, tile_cache=TileCache(cache_bytes))
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        await server.serve()

    asyncio.run(main())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fit_zoom() -> int:
    """The largest zoom at which the whole city fits a SCREEN-sized view."""
    for z in range(tiles.MAX_ZOOM, -1, -1):
        w, h = _world_px(SEOUL[2], SEOUL[1], z)
        x0, y0 = _world_px(SEOUL[0], SEOUL[3], z)
        if w - x0 <= SCREEN[0] and h - y0 <= SCREEN[1]:
            return z
    return 0


def _world_px(lon: float, lat: float, z: int) -> tuple[float, float]:
    size = TILE_PX * (1 << z)
    s = math.sin(math.radians(lat))
    y = (0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)) * size
    return (lon + 180) / 360 * size, y


def screen_tiles(z: int) -> list[tuple[int, int, int]]:
    """The tiles of a SCREEN-sized view centred on the city at zoom ``z``."""
    cx, cy = _world_px((SEOUL[0] + SEOUL[2]) / 2, (SEOUL[1] + SEOUL[3]) / 2, z)
    x0, x1 = int((cx - SCREEN[0] / 2) // TILE_PX), int((cx + SCREEN[0] / 2) // TILE_PX)
    y0, y1 = int((cy - SCREEN[1] / 2) // TILE_PX), int((cy + SCREEN[1] / 2) // TILE_PX)
    return [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]


def _stats(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(math.ceil(0.95 * len(times)) - 1, 0)], 1),
        "max_ms": round(times[-1], 1),
    }


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    t = time.perf_counter()
    await call()
    return (time.perf_counter() - t) * 1000


class Client:
    """Every request of the benchmark goes through here (the bearer token, if any)."""

    def __init__(self, base: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        limits = httpx.Limits(max_connections=CONCURRENCY)
        self.http = httpx.AsyncClient(
            base_url=base, headers=headers, limits=limits, timeout=TIMEOUT_S
        )

    async def get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response:
        r = await self.http.get(url, params=params)
        if r.status_code != 200:
            raise RuntimeError(f"GET {url}: {r.status_code} {r.text[:200]}")
        return r


async def _wait_up(c: Client) -> None:
    deadline = time.monotonic() + 600  # a first open migrates (0009 indexes 10M events)
    while time.monotonic() < deadline:
        try:
            if (await c.http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.5)
    raise RuntimeError("the collector did not come up")


def cpu_ms(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _period() -> tuple[str, dict[str, str]]:
    """The bench's period (day 10 of 30): the tile query string and the parameters."""
    day = START_MS + 10 * DAY_MS
    iso = {
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(day / 1000)),
        "until": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((day + DAY_MS) / 1000)),
    }
    return f"?since={iso['since']}&until={iso['until']}", iso


def tile_urls(runs: int, query: str) -> dict[str, list[str]]:
    """Per layer ``runs`` distinct tiles at random places in the city, zooms from the one
    that fits the city to four beyond (fewer when the zooms hold fewer tiles)."""
    z0 = fit_zoom()
    rng = random.Random(3)
    out: dict[str, list[str]] = {}
    for layer in tiles.LAYERS:
        seen: set[tuple[int, int, int]] = set()
        for _ in range(runs * 20):
            if len(seen) == runs:
                break
            z = rng.randint(z0, z0 + 4)
            x, y = tiles.tile_of(
                rng.uniform(SEOUL[0], SEOUL[2]), rng.uniform(SEOUL[1], SEOUL[3]), z
            )
            seen.add((z, x, y))
        out[layer] = [f"/tiles/{layer}/{z}/{x}/{y}.mvt{query}" for z, x, y in sorted(seen)]
    return out


async def tile_figures(c: Client, pid: int, urls: dict[str, list[str]]) -> dict[str, Any]:
    """Each layer's tiles one at a time: p50/p95/max, collector CPU per tile, size."""
    out: dict[str, Any] = {}
    for layer, layer_urls in urls.items():
        times, sizes = [], []
        cpu = cpu_ms(pid)
        for url in layer_urls:
            t = time.perf_counter()
            r = await c.get(url)
            times.append((time.perf_counter() - t) * 1000)
            sizes.append(len(r.content))
        out[f"tile_{layer}"] = {
            **_stats(times), "tiles": len(layer_urls),
            "server_cpu_ms": round((cpu_ms(pid) - cpu) / len(layer_urls), 1),
            "mean_bytes": round(statistics.mean(sizes)),
        }  # fmt: skip
    return out


async def screen_figures(c: Client, pid: int, urls: list[str], runs: int) -> dict[str, Any]:
    """The whole screen's tiles, CONCURRENCY at a time, ``runs`` times."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(url: str) -> None:
        async with gate:
            await c.get(url)

    cpu = cpu_ms(pid)
    screen = [await _timed(lambda: asyncio.gather(*(one(u) for u in urls))) for _ in range(runs)]
    cpu = (cpu_ms(pid) - cpu) / runs
    return {**_stats(screen), "server_cpu_ms": round(cpu, 1), "tiles": len(urls)}


def _page_params() -> dict[str, str]:
    return {"bbox": ",".join(map(str, SEOUL)), "min_exposure": "5", **_period()[1]}


async def measure_cold(c: Client, pid: int, runs: tuple[int, int, int]) -> dict[str, Any]:
    """A collector without the tile cache: every tile made from the store."""
    tile_runs, screen_runs, page_runs = runs
    query = _period()[0]
    z0 = fit_zoom()
    out: dict[str, Any] = {
        "fit_zoom": z0,
        **await tile_figures(c, pid, tile_urls(tile_runs, query)),
    }
    view = screen_tiles(z0)
    urls = [f"/tiles/{layer}/{z}/{x}/{y}.mvt{query}" for layer in tiles.LAYERS for z, x, y in view]
    out["screen"] = await screen_figures(c, pid, urls, screen_runs)
    params = _page_params()
    await c.get("/v1/road-conditions", params)
    cpu = cpu_ms(pid)
    pages = [await _timed(lambda: c.get("/v1/road-conditions", params)) for _ in range(page_runs)]
    cpu = (cpu_ms(pid) - cpu) / page_runs
    out["first_page"] = {**_stats(pages), "server_cpu_ms": round(cpu, 1)}
    return out


async def measure_warm(c: Client, pid: int, runs: tuple[int, int, int]) -> dict[str, Any]:
    """A collector with its tile cache, after one pass over the same tiles and screen
    (the first pass's own figures: ``first_pass``)."""
    tile_runs, screen_runs, _ = runs
    query, _ = _period()
    urls = tile_urls(tile_runs, query)
    view = screen_tiles(fit_zoom())
    screen = [
        f"/tiles/{layer}/{z}/{x}/{y}.mvt{query}" for layer in tiles.LAYERS for z, x, y in view
    ]
    first = await screen_figures(c, pid, screen, 1)
    await tile_figures(c, pid, urls)
    out: dict[str, Any] = {"first_pass_screen": first, **await tile_figures(c, pid, urls)}
    out["screen"] = await screen_figures(c, pid, screen, screen_runs)
    return out


async def full_read(c: Client, params: dict[str, str]) -> dict[str, Any]:
    t = time.perf_counter()
    r = await c.get("/v1/road-conditions", params)
    pages, cells = 1, len(r.json()["features"])
    while (nxt := r.json()["next_cursor"]) is not None and pages < 10_000:
        r = await c.get("/v1/road-conditions", {**params, "cursor": nxt})
        pages, cells = pages + 1, cells + len(r.json()["features"])
    return {"pages": pages, "cell_hours": cells, "seconds": round(time.perf_counter() - t, 1)}


async def store_paths(store_url: str, runs: int) -> dict[str, Any]:
    """``Store.tile_cells`` alone, in this process, for the ``road_conditions`` tiles of
    ``tile_urls``: the day (its per-day sums) and the same hours from the cell-hours (the
    day less its last second: no whole day), alternating tile by tile, three passes;
    every hour's view and the city's (the default k). p50/p95/max of the wall time and
    this process's CPU per query (on SQLite the database's work is in it)."""
    day = START_MS + 10 * DAY_MS
    # "/tiles/road_conditions/{z}/{x}/{y}.mvt"
    paths = [u.removesuffix(".mvt").split("/")[3:6] for u in tile_urls(runs, "")["road_conditions"]]
    coords = [(int(z), int(x), int(y)) for z, x, y in paths]
    store = await open_store(store_url)
    out: dict[str, Any] = {}
    try:
        for view, k in (("all", 0), ("city", AuthConfig().k_anonymity)):
            times: dict[str, list[float]] = {"days": [], "hours": []}
            cpu = dict.fromkeys(times, 0.0)
            for z, x, y in coords * 3:
                res = tiles.cell_res(z)
                bbox = tiles.padded(tiles.tile_bbox(tiles.Tile(z, x, y)), res)
                for name, until in (("days", day + DAY_MS), ("hours", day + DAY_MS - 1000)):
                    q = TileQuery(bbox=bbox, res=res, since_ms=day, until_ms=until, min_vehicles=k)
                    c, t = time.process_time(), time.perf_counter()
                    await store.tile_cells(q)
                    times[name].append((time.perf_counter() - t) * 1000)
                    cpu[name] += time.process_time() - c
            out[view] = {
                name: {**_stats(v), "cpu_ms": round(1000 * cpu[name] / len(v), 1)}
                for name, v in times.items()
            }
    finally:
        await store.close()
    return out


async def bench_token(store_url: str, role: str = "admin") -> str:
    """A new token of ``role`` in the store at ``store_url`` (named after the benchmark and
    the time, so that reruns do not collide)."""
    from cloud_collector.roles import Role
    from cloud_collector.store.access import TokenRecord
    from cloud_collector.tokens_cli import create_token

    store = await open_store(store_url)
    try:
        record = TokenRecord(
            name=f"bench-tiles-{time.time_ns()}", token_hash="", role=Role(role), fleets=(),
            created_ms=int(time.time() * 1000), expires_ms=None, revoked_ms=None,
        )  # fmt: skip
        return await create_token(store.access, record)
    finally:
        await store.close()


async def run_backend(store_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Cold (a collector without the tile cache) and warm (with it) figures."""
    out: dict[str, Any] = {}
    token = args.token or await bench_token(store_url, args.role)
    runs = (args.tile_runs, args.screen_runs, args.page_runs)
    for name, cache_bytes in (("cold", 0), ("warm", None)):
        port = _free_port()
        server = multiprocessing.get_context("spawn").Process(
            target=_serve, args=(store_url, port, cache_bytes)
        )
        server.start()
        c = Client(f"http://127.0.0.1:{port}", token)
        try:
            await _wait_up(c)
            assert server.pid is not None
            if name == "cold":
                out[name] = await measure_cold(c, server.pid, runs)
                if args.full_read:
                    out["full_read"] = await full_read(c, _page_params())
            else:
                out[name] = await measure_warm(c, server.pid, runs)
        finally:
            await c.http.aclose()
            server.terminate()
            server.join(30)
        print(json.dumps({name: out[name]}), flush=True)
    if args.store_paths:
        out["store_paths"] = await store_paths(store_url, args.tile_runs)
        print(json.dumps({"store_paths": out["store_paths"]}), flush=True)
    out["load_average"] = os.getloadavg()
    return out


async def bench(url: str, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"events": args.events, "days": DAYS}
    t = time.monotonic()
    store = await open_store(url)  # creates the schema, or migrates a loaded one
    await store.close()
    result["open_s"] = round(time.monotonic() - t, 1)
    if not args.loaded:
        result["load_s"] = round(await load(url, args.events, args.points), 1)
    result["road_edges"] = await load_roads(url, args.drives)
    if args.postgres:
        result["postgres"] = await run_backend(url, args)
        print(json.dumps({"postgres": result["postgres"]}), flush=True)
    if args.sqlite_db is not None:
        if not args.sqlite_db.exists():
            result["sqlite_copy_s"] = round(await copy_to_sqlite(url, args.sqlite_db), 1)
        result["sqlite"] = await run_backend(f"sqlite://{args.sqlite_db}", args)
    elif args.sqlite:
        with tempfile.TemporaryDirectory(prefix="bench-tiles-") as tmp:
            path = Path(tmp) / "city.db"
            result["sqlite_copy_s"] = round(await copy_to_sqlite(url, path), 1)
            result["sqlite"] = await run_backend(f"sqlite://{path}", args)
    return result


def trace_batch(seq: int) -> Batch:
    """A bulk batch of one taxi: a minute of one-second fixes on a walk, three events."""
    rng = random.Random(seq)
    start = START_MS + seq * 60_000
    fixes = list(_walk(rng, start))[:60]
    events = [Event("fcw", f.time_ms, 40.0, f, FrameRef("cam", 0x700), {}) for f in fixes[::20]]
    return Batch.build(
        fleet_id="bench", vehicle_id="taxi-1", epoch=1, seq=seq, sent_ms=start + 60_000,
        gnss=fixes, events=events,
    )  # fmt: skip


async def ingest_cost(store_url: str, batches: int) -> dict[str, float]:
    """Ms per batch of 60 one-second fixes (plus 3 events), with and without the roads
    upsert, alternating batch by batch (``roads.store_edges`` swapped for a no-op)."""
    store = await open_store(store_url)
    real = roads.store_edges

    async def skip(*_: object) -> None:
        return None

    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for seq in range(1, 2 * batches + 1):
            with_roads = seq % 2 == 0
            roads.store_edges = real if with_roads else skip  # type: ignore[assignment]
            b = trace_batch(seq)
            t = time.perf_counter()
            await store.ingest(b, topic_channel="batch", payload_bytes=1, received_ms=0)
            times[with_roads].append((time.perf_counter() - t) * 1000)
    finally:
        roads.store_edges = real
        await store.close()
    on, off = statistics.median(times[True]), statistics.median(times[False])
    return {"with_roads_ms": round(on, 2), "without_ms": round(off, 2)}


async def ingest_costs(batches: int) -> dict[str, Any]:
    from harness.postgres import PgHarness

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        lite = await ingest_cost(f"sqlite://{Path(tmp) / 'i.db'}", batches)
    with PgHarness() as pg:
        post = await ingest_cost(pg.create_database("ingest"), batches)
    return {"batches_each": batches, "sqlite": lite, "postgres": post}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--points", type=int, default=20_000, help="distinct road points")
    parser.add_argument("--drives", type=int, default=3_000, help="synthetic drives (roads)")
    parser.add_argument("--tile-runs", type=int, default=60)
    parser.add_argument("--screen-runs", type=int, default=20)
    parser.add_argument("--page-runs", type=int, default=30)
    parser.add_argument("--url", help="an existing, empty PostgreSQL database")
    parser.add_argument("--loaded", action="store_true", help="--url is loaded already")
    parser.add_argument("--no-sqlite", dest="sqlite", action="store_false")
    parser.add_argument(
        "--no-postgres", dest="postgres", action="store_false", help="measure SQLite only"
    )
    parser.add_argument(
        "--sqlite-db", type=Path, help="keep the SQLite copy here (reused when it exists)"
    )
    parser.add_argument("--full-read", action="store_true", help="also follow every next link")
    parser.add_argument(
        "--store-paths", action="store_true",
        help="also: the road_conditions tile query from per-day sums vs from cell-hours",
    )  # fmt: skip
    parser.add_argument("--token", default=os.environ.get("COLLECTOR_TOKEN"))
    parser.add_argument(
        "--role", choices=("admin", "city"), default="admin",
        help="the minted token's role (city: the k-anonymous view)",
    )  # fmt: skip
    parser.add_argument(
        "--ingest-cost", type=int, metavar="N", help="only: ms per batch with/without roads"
    )
    args = parser.parse_args()
    print("command:", shlex.join([sys.executable, "-m", "bench.tiles", *sys.argv[1:]]))
    if args.ingest_cost:
        print(json.dumps(asyncio.run(ingest_costs(args.ingest_cost))))
        return
    result = on_postgres(args.url, lambda url: bench(url, args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
