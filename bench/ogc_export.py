"""Benchmark: OGC API - Features pages and ``cloud-collector export`` on PostgreSQL with
millions of events (the city data set of ``bench.road_query``).

Run (starts its own PostgreSQL via harness/postgres.py unless --url is given)::

    .venv/bin/python -m bench.ogc_export --events 1000000

Loads the synthetic Seoul events and cell-hours of ``bench.road_query``, then:

* times OGC requests through the app in-process (httpx over ASGI: the routing, the store
  and the JSON, no socket; wall time, and the CPU time of this process alone, which a
  loaded machine disturbs less): ``/ogc/collections`` (extents), a first page of events and of
  road conditions (default limit and 1,000; the first page also counts ``numberMatched``
  up to its cap), a page deep into the events by its cursor, and a one-day, one-district
  page (bbox and datetime); ``--runs`` runs each after 2 warm-up runs, p50/p95/max;
* runs ``cloud-collector export`` for both formats as child processes and reports their
  wall and CPU time, rows per second and peak resident memory (``wait4``), to show that
  memory stays flat as the store grows.

Every request and the export talk to the loopback database only; each loop is bounded by
``--runs``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.road_query import START_MS, load, on_postgres
from bench.tiles import bench_token
from cloud_collector.api import create_app
from cloud_collector.store import aggregate as agg
from cloud_collector.store import open_store
from cloud_collector.store.reads import encode_cursor

DISTRICT = "126.97,37.55,127.01,37.58"  # a few km around Seoul city hall


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def _stats(times: list[float]) -> dict[str, float]:
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(int(0.95 * len(times)) - 1, 0)], 1),
        "max_ms": round(times[-1], 1),
    }


async def _time_requests(url: str, n: int, runs: int) -> dict[str, Any]:
    store = await open_store(url)
    app = create_app(store)
    day = START_MS + 10 * agg.DAY_MS
    deep = encode_cursor(START_MS + 20 * agg.DAY_MS, n // 2)
    cases = {
        "collections (extents cached)": ("/ogc/collections", {}),
        "events first page": ("/ogc/collections/events/items", {}),
        "events first page, limit 1000": ("/ogc/collections/events/items", {"limit": "1000"}),
        "events page deep by cursor": ("/ogc/collections/events/items", {"cursor": deep}),
        "road first page, limit 1000": (
            "/ogc/collections/road-conditions/items", {"limit": "1000"}
        ),
        "road one day one district": (
            "/ogc/collections/road-conditions/items",
            {"bbox": DISTRICT, "datetime": f"{_iso(day)}/{_iso(day + agg.DAY_MS - 1000)}",
             "limit": "1000"},
        ),
    }  # fmt: skip
    out: dict[str, Any] = {}
    try:
        # The store's extents as /ogc/collections computes them when its cache is cold.
        times = []
        for _ in range(min(runs, 5)):
            t = time.perf_counter()
            await store.extents()
            times.append((time.perf_counter() - t) * 1000)
        out["extents (store, uncached)"] = _stats(times)
        transport = httpx.ASGITransport(app=app)
        auth = {"Authorization": f"Bearer {await bench_token(url)}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=auth
        ) as client:
            for name, (path, params) in cases.items():
                times = []
                cpu = []
                body: dict[str, Any] = {}
                for i in range(runs + 2):
                    t, c = time.perf_counter(), time.process_time()
                    r = await client.get(path, params=params)
                    elapsed = (time.perf_counter() - t) * 1000
                    if i >= 2:
                        cpu.append((time.process_time() - c) * 1000)
                    if r.status_code != 200:
                        raise RuntimeError(f"{name}: {r.status_code} {r.text[:200]}")
                    body = r.json()
                    if i >= 2:
                        times.append(elapsed)
                out[name] = {
                    **_stats(times),
                    # this process's CPU (routing, JSON, geometry; not the database's)
                    "cpu_p50_ms": round(statistics.median(cpu), 1),
                    "returned": body.get("numberReturned"),
                    "matched": body.get("numberMatched"),
                }
    finally:
        await store.close()
    return out


def _export(url: str, fmt: str, out: Path, config: Path) -> dict[str, Any]:
    """One export as a child process: wall time, rows and its peak RSS."""
    config.write_text(f'[store]\nurl = "{url}"\n')
    argv = [sys.executable, "-m", "cloud_collector.cli", "export", "--config", str(config),
            "--format", fmt, "--out", str(out)]  # fmt: skip
    t = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if status != 0:
        raise RuntimeError(f"export {fmt} failed: {stderr[-500:]}")
    rows = sum(int(part.split(": ")[1].split()[0]) for part in stdout.split(" -> ")[0].split(", "))
    size = sum(f.stat().st_size for f in out.rglob("*")) if out.is_dir() else out.stat().st_size
    return {
        "wall_s": round(wall, 1),
        "rows": rows,
        "rows_per_s": round(rows / wall),
        # CPU time of the export process alone: steadier than wall time on a shared machine.
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "size_mb": round(size / 1e6, 1),
    }


async def bench(url: str, n: int, n_points: int, runs: int, do_export: bool) -> dict[str, Any]:
    store = await open_store(url)  # migrates
    await store.close()
    load_s = await load(url, n, n_points)
    result: dict[str, Any] = {"events": n, "load_s": round(load_s, 1)}
    result["requests"] = await _time_requests(url, n, runs)
    if not do_export:
        return result
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        result["export geopackage"] = _export(url, "geopackage", base / "out.gpkg", base / "c.toml")
        result["export geoparquet"] = _export(url, "geoparquet", base / "pq", base / "c.toml")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--points", type=int, default=20_000, help="distinct road points")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--url", help="an existing, empty PostgreSQL database")
    parser.add_argument("--no-export", action="store_true", help="time the requests only")
    args = parser.parse_args()
    print("command:", shlex.join([sys.executable, "-m", "bench.ogc_export", *sys.argv[1:]]))
    result = on_postgres(
        args.url, lambda url: bench(url, args.events, args.points, args.runs, not args.no_export)
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
