"""Benchmark: a city-wide ``road_conditions`` query on PostgreSQL with millions of events.

Run (starts its own PostgreSQL via tests/pg_harness.py unless --url is given)::

    .venv/bin/python -m bench.road_query --events 10000000

Loading: events are generated over the Seoul bbox on a fixed set of road points and 30 days,
and loaded with COPY straight into ``events``. The aggregate rows are computed in the same
pass, in Python, with the same functions ingest uses (``aggregate.cell_at``/``parent``/
``hour_of``): ``road_events`` gets exactly the counts ingest would produce. There are no
GNSS traces in the bench, so each cell-hour's exposure (passes) is synthetic: the events of
the cell-hour times a random factor of 2..20, with shares and speeds drawn at random.
The query is ``Store.road_conditions`` (bbox = whole city, one day, min_exposure 5), 50
runs after 3 warm-up runs; p50/p95/max are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloud_collector.store import RoadQuery, open_store
from cloud_collector.store import aggregate as agg

SEOUL = (126.80, 37.45, 127.18, 37.70)  # min_lon, min_lat, max_lon, max_lat
DAYS = 30
START_MS = 1_717_200_000_000 - 1_717_200_000_000 % agg.DAY_MS
TYPES = ("fcw", "ldw", "harsh_braking", "pcw", "headway_warning", "tsr_sign", "wipers_on")
CHUNK = 200_000


def road_points(n: int, rng: random.Random) -> list[tuple[float, float, int, int]]:
    points = []
    for _ in range(n):
        lat = rng.uniform(SEOUL[1], SEOUL[3])
        lon = rng.uniform(SEOUL[0], SEOUL[2])
        c12 = agg.cell_at(lat, lon)
        points.append((lat, lon, c12, agg.parent(c12)))
    return points


def event_rows(
    n: int, points: list[tuple[float, float, int, int]], counts: Counter[tuple[int, int, str]]
) -> Iterator[list[tuple[object, ...]]]:
    rng = random.Random(2)
    span = DAYS * agg.DAY_MS
    chunk: list[tuple[object, ...]] = []
    for i in range(n):
        # Skewed: a few road points see most events, like real hotspots.
        lat, lon, c12, c10 = points[min(int(rng.paretovariate(1.2)) - 1, len(points) - 1)]
        if rng.random() < 0.7:
            lat, lon, c12, c10 = points[rng.randrange(len(points))]
        t = START_MS + rng.randrange(span)
        kind = TYPES[rng.randrange(len(TYPES))]
        counts[(c10, agg.hour_of(t), kind)] += 1
        chunk.append(
            (t, f"taxi-{i % 3000}", "seoul", kind, "{}", lat, lon, c12, 40.0, None, None, "1", i)
        )
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def load(con: asyncpg.Connection, n: int, n_points: int) -> float:
    started = time.monotonic()
    points = road_points(n_points, random.Random(1))
    counts: Counter[tuple[int, int, str]] = Counter()
    columns = [
        "time_ms", "vehicle", "fleet", "type", "attrs", "lat", "lon", "h3_12", "speed_kmh",
        "source_bus", "source_id", "epoch", "seq",
    ]  # fmt: skip
    await con.execute("ALTER TABLE events SET (autovacuum_enabled = false)")
    for chunk in event_rows(n, points, counts):
        await con.copy_records_to_table("events", records=chunk, columns=columns)
    per_cell: dict[tuple[int, int], int] = Counter()
    for (c10, hour, _), k in counts.items():
        per_cell[(c10, hour)] += k
    rng = random.Random(3)
    cell_rows = []
    for (c10, hour), k in per_cell.items():
        lat, lon = agg.centre(c10)
        passes = k * rng.randint(2, 20)
        cell_rows.append(
            (c10, hour, lat, lon, passes, rng.randint(0, passes), rng.randint(0, passes // 10),
             rng.randint(0, passes), 40.0 * passes, passes)
        )  # fmt: skip
    await con.copy_records_to_table("road_cells", records=cell_rows)
    await con.copy_records_to_table(
        "road_events", records=[(c, h, t, k) for (c, h, t), k in counts.items()]
    )
    await con.execute("ANALYZE")
    print(f"loaded {n} events, {len(cell_rows)} cell-hours, {len(counts)} cell-hour-type rows")
    return time.monotonic() - started


async def bench(url: str, n: int, n_points: int, runs: int) -> dict[str, float]:
    store = await open_store(url)
    con = await asyncpg.connect(url)
    try:
        load_s = await load(con, n, n_points)
    finally:
        await con.close()
    day = START_MS + 10 * agg.DAY_MS
    q = RoadQuery(bbox=SEOUL, since_ms=day, until_ms=day + agg.DAY_MS, min_exposure=5)
    times = []
    rows = 0
    for i in range(runs + 3):
        t = time.perf_counter()
        rows = len(await store.road_conditions(q))
        if i >= 3:
            times.append((time.perf_counter() - t) * 1000)
    await store.close()
    times.sort()
    return {
        "events": n,
        "load_s": round(load_s, 1),
        "rows_returned": rows,
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(0.95 * len(times)) - 1], 1),
        "max_ms": round(times[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--points", type=int, default=20_000, help="distinct road points")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--url", help="an existing, empty PostgreSQL database")
    args = parser.parse_args()
    print("command:", " ".join(sys.argv))
    if args.url:
        result = asyncio.run(bench(args.url, args.events, args.points, args.runs))
    else:
        from tests.pg_harness import PgHarness

        with PgHarness(extra_settings={"shared_buffers": "512MB", "max_wal_size": "4GB"}) as pg:
            url = pg.create_database("bench")
            result = asyncio.run(bench(url, args.events, args.points, args.runs))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
