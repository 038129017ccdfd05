"""Benchmark: the city-wide road-conditions query's first page and a full read, over HTTP,
on the city data set, on PostgreSQL and on SQLite.

Run (starts its own PostgreSQL via harness/postgres.py and loads it as
``bench.road_query`` does, unless --url names a database loaded before, with --loaded)::

    .venv/bin/python -m bench.road_conditions --events 10000000 --full-read

Data: the events and cell-hours of ``bench.road_query`` (Seoul, 30 days). The SQLite
store is a copy of the PostgreSQL one's cell-hours (``bench.tiles.copy_to_sqlite``; the
query reads no other table), kept at ``--sqlite-path`` when given (and reused when that
file exists).

The collector's app (``create_app`` over ``open_store``) is served by uvicorn in a child
process on 127.0.0.1 (``bench.tiles``); the benchmark mints an admin and a city token
into the store. Period: one day (day 10 of 30), the whole city, ``min_exposure`` 5.
Figures, per backend and role (the city sees k-anonymous cell-hours only):

* first page of ``/v1/road-conditions`` (default page size) and of the OGC collection
  ``/ogc/collections/road-conditions/items`` (the same ``limit``): p50/p95/max of the wall
  time over ``--page-runs`` after one warm-up, ``server_cpu_ms`` (the collector process's
  own CPU per page, from /proc; SQLite's work is in it, PostgreSQL's is not) and the
  bytes of a page;
* the store's query alone in this process (``Queries.road_conditions``, rows to objects):
  p50/p95 over ``--page-runs``; on PostgreSQL also the database's own execution time of
  the first page's SQL (EXPLAIN ANALYZE, median of 5);
* with ``--full-read``: every page of the day by its next links: pages, cell-hours,
  seconds, the collector's CPU seconds, and its resident memory before and its peak
  (VmHWM) after, which shows that no page holds the whole result.

The machine's load average is printed beside the figures: other work on it inflates the
wall times, much less the CPU figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.road_query import SEOUL, START_MS, _Recorder, load, on_postgres
from bench.tiles import Client, _free_port, _serve, _wait_up, copy_to_sqlite, cpu_ms
from cloud_collector.roles import Role
from cloud_collector.routes.road_conditions import DEFAULT_ROAD_LIMIT
from cloud_collector.store import RoadQuery, open_store, reads
from cloud_collector.store import aggregate as agg
from cloud_collector.store.access import TokenRecord
from cloud_collector.store.postgres import SESSION_SETTINGS
from cloud_collector.tokens_cli import create_token

DAY = START_MS + 10 * agg.DAY_MS
K = 3  # the collector's default k-anonymity (config [privacy] k_anonymity)
MIN_EXPOSURE = 5
MAX_PAGES = 10_000
EXPLAIN_RUNS = 5
ROLES = (Role.ADMIN, Role.CITY)


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


V1_PARAMS = {
    "bbox": ",".join(map(str, SEOUL)),
    "since": _iso(DAY),
    "until": _iso(DAY + agg.DAY_MS),
    "min_exposure": str(MIN_EXPOSURE),
}
OGC_PARAMS = {
    "bbox": ",".join(map(str, SEOUL)),
    "datetime": f"{_iso(DAY)}/{_iso(DAY + agg.DAY_MS - 1000)}",
    "limit": str(DEFAULT_ROAD_LIMIT),  # the same page size (--limit sets both)
}


def _stats(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(-(-95 * len(times) // 100) - 1, 0)], 1),
        "max_ms": round(times[-1], 1),
    }


def _query(role: Role, limit: int | None) -> RoadQuery:
    return RoadQuery(
        bbox=SEOUL, since_ms=DAY, until_ms=DAY + agg.DAY_MS, min_exposure=MIN_EXPOSURE,
        limit=limit, min_vehicles=K if role is Role.CITY else 0,
    )  # fmt: skip


def _memory_kb(pid: int, key: str) -> int:
    """A ``Vm*`` line of /proc/<pid>/status (kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


async def mint_tokens(store_url: str) -> dict[Role, str]:
    store = await open_store(store_url)
    try:
        tokens = {}
        for role in ROLES:
            record = TokenRecord(
                name=f"bench-{role.value}-{os.getpid()}", token_hash="", role=role, fleets=(),
                created_ms=0, expires_ms=None, revoked_ms=None,
            )  # fmt: skip
            tokens[role] = await create_token(store.access, record)
        return tokens
    finally:
        await store.close()


def page_size() -> int:
    """The ``limit`` the requests ask for (``--limit``, or the API's default)."""
    return int(V1_PARAMS.get("limit", DEFAULT_ROAD_LIMIT))


async def store_query(store_url: str, runs: int, limit: int) -> dict[str, Any]:
    """The store's first-page query in this process, per role: p50/p95."""
    store = await open_store(store_url)
    out: dict[str, Any] = {}
    try:
        for role in ROLES:
            q = _query(role, limit + 1)
            await store.road_conditions(q)
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                await store.road_conditions(q)
                times.append((time.perf_counter() - t) * 1000)
            out[role.value] = _stats(times)
    finally:
        await store.close()
    return out


async def explain_ms(url: str, limit: int) -> dict[str, float]:
    """PostgreSQL's execution time of the first page's SQL (EXPLAIN ANALYZE), per role."""
    out: dict[str, float] = {}
    con = await asyncpg.connect(url, server_settings=SESSION_SETTINGS)
    try:
        for role in ROLES:
            recorder = _Recorder()
            await reads.road_conditions(recorder, _query(role, limit + 1))
            times = []
            for _ in range(EXPLAIN_RUNS):
                plan = await con.fetchval(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) {recorder.sql}", *recorder.args
                )
                times.append(float(json.loads(plan)[0]["Execution Time"]))
            out[role.value] = round(statistics.median(times), 2)
    finally:
        await con.close()
    return out


async def first_pages(c: Client, pid: int, path: str, params: dict[str, str], runs: int) -> Any:
    r = await c.get(path, params)  # warm-up
    cpu = cpu_ms(pid)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        await c.get(path, params)
        times.append((time.perf_counter() - t) * 1000)
    cpu = (cpu_ms(pid) - cpu) / runs
    rows = len(r.json()["features"])
    return {**_stats(times), "server_cpu_ms": round(cpu, 1), "rows": rows, "bytes": len(r.content)}


async def full_read(c: Client, pid: int) -> dict[str, Any]:
    rss_kb = _memory_kb(pid, "VmRSS")
    cpu = cpu_ms(pid)
    t = time.perf_counter()
    body = (await c.get("/v1/road-conditions", V1_PARAMS)).json()
    pages, cells = 1, len(body["features"])
    while (nxt := body["next_cursor"]) is not None and pages < MAX_PAGES:
        body = (await c.get("/v1/road-conditions", {**V1_PARAMS, "cursor": nxt})).json()
        pages, cells = pages + 1, cells + len(body["features"])
    return {
        "pages": pages, "cell_hours": cells, "seconds": round(time.perf_counter() - t, 1),
        "server_cpu_s": round((cpu_ms(pid) - cpu) / 1000, 2),
        "rss_before_mb": round(rss_kb / 1024, 1),
        "peak_rss_mb": round(_memory_kb(pid, "VmHWM") / 1024, 1),
    }  # fmt: skip


async def measure(base: str, pid: int, tokens: dict[Role, str], args: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for role in ROLES:
        c = Client(base, tokens[role])
        try:
            one: dict[str, Any] = {
                "v1_first_page": await first_pages(
                    c, pid, "/v1/road-conditions", V1_PARAMS, args.page_runs
                ),
                "ogc_first_page": await first_pages(
                    c, pid, "/ogc/collections/road-conditions/items", OGC_PARAMS, args.page_runs
                ),
            }
            if args.full_read:
                one["full_read"] = await full_read(c, pid)
            out[role.value] = one
        finally:
            await c.http.aclose()
    return out


async def run_backend(store_url: str, args: argparse.Namespace) -> dict[str, Any]:
    tokens = await mint_tokens(store_url)
    port = _free_port()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(store_url, port))
    server.start()
    base = f"http://127.0.0.1:{port}"
    try:
        probe = Client(base, None)
        try:
            await _wait_up(probe)
        finally:
            await probe.http.aclose()
        assert server.pid is not None
        out = await measure(base, server.pid, tokens, args)
    finally:
        server.terminate()
        server.join(30)
    out["store_query"] = await store_query(store_url, args.page_runs, page_size())
    out["load_average"] = [round(x, 1) for x in os.getloadavg()]
    return out


async def bench(url: str, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"events": args.events}
    store = await open_store(url)  # creates the schema, or migrates a loaded one
    await store.close()
    if not args.loaded:
        result["load_s"] = round(await load(url, args.events, args.points), 1)
    result["postgres"] = await run_backend(url, args)
    result["postgres"]["db_execution_ms"] = await explain_ms(url, page_size())
    print(json.dumps({"postgres": result["postgres"]}), flush=True)
    if args.sqlite:
        with tempfile.TemporaryDirectory(prefix="bench-rc-") as tmp:
            path = Path(args.sqlite_path or Path(tmp) / "city.db")
            if not path.exists():  # noqa: ASYNC240 - once, before any request
                copied = await copy_to_sqlite(url, path, ("road_cells",))
                result["sqlite_copy_s"] = round(copied, 1)
            result["sqlite"] = await run_backend(f"sqlite://{path}", args)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--points", type=int, default=20_000, help="distinct road points")
    parser.add_argument("--page-runs", type=int, default=30)
    parser.add_argument("--url", help="a PostgreSQL database (empty, or loaded: --loaded)")
    parser.add_argument("--loaded", action="store_true", help="--url is loaded already")
    parser.add_argument("--no-sqlite", dest="sqlite", action="store_false")
    parser.add_argument("--sqlite-path", help="the SQLite copy: made there, or reused")
    parser.add_argument("--full-read", action="store_true", help="also follow every next link")
    parser.add_argument("--limit", type=int, help="page size asked for (default: the API's)")
    args = parser.parse_args()
    if args.limit is not None:
        V1_PARAMS["limit"] = OGC_PARAMS["limit"] = str(args.limit)
    print("command:", shlex.join([sys.executable, "-m", "bench.road_conditions", *sys.argv[1:]]))
    result = on_postgres(args.url, lambda url: bench(url, args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
