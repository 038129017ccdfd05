"""Benchmark: the PostgreSQL expiry of ``road_cell_vehicles`` ([retention]
cell_vehicles_days) with and without the index by hour of migration 0013.

    .venv/bin/python -m bench.cell_vehicles_expiry [--vehicles 1000] [--hours 100]
        [--cells 10] [--expired-hours 1] [--rounds 3]

Starts its own PostgreSQL (harness/postgres.py), opens the store (all migrations), fills
``road_cell_vehicles`` with ``vehicles x hours x cells`` rows (generated in the server,
in hour order as ingest writes them),
then runs the retention job's statement (``DELETE ... WHERE hour_ms < cut``, the oldest
``--expired-hours`` hours) under ``EXPLAIN (ANALYZE, BUFFERS)`` inside a transaction that
is rolled back, so every run deletes the same rows: once as the schema is, once with the
index dropped in the same transaction (rolled back with it), alternating, ``--rounds``
times. Prints one JSON line per run: execution ms, shared buffers touched, rows deleted,
the plan's top node, with the load average. Bounded: ``--rounds`` x 2 statements.
Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

import asyncpg

from cloud_collector.store import open_store
from harness.postgres import PgHarness

HOUR_MS = 3_600_000
DELETE = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) DELETE FROM road_cell_vehicles WHERE hour_ms < $1"


async def _fill(con: asyncpg.Connection, args: argparse.Namespace) -> int:
    await con.execute(
        "INSERT INTO road_cell_vehicles (vehicle, hour_ms, cell)"
        " SELECT 'taxi-' || v, h * $1::bigint, c FROM generate_series(0, $3 - 1) h,"
        " generate_series(1, $2) v, generate_series(1, $4) c ORDER BY h, v, c",
        HOUR_MS, args.vehicles, args.hours, args.cells,
    )  # fmt: skip
    await con.execute("VACUUM ANALYZE road_cell_vehicles")
    return int(await con.fetchval("SELECT COUNT(*) FROM road_cell_vehicles"))


async def _run(con: asyncpg.Connection, cut_ms: int, indexed: bool) -> dict[str, Any]:
    tx = con.transaction()
    await tx.start()
    try:
        if not indexed:
            await con.execute("DROP INDEX road_cell_vehicles_hour")
        doc = json.loads(await con.fetchval(DELETE, cut_ms))[0]
    finally:
        await tx.rollback()
    plan = doc["Plan"]
    scan = plan["Plans"][0] if plan.get("Plans") else plan
    return {
        "index_by_hour": indexed,
        "execution_ms": round(doc["Execution Time"], 1),
        "shared_buffers": plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0),
        "rows_deleted": scan.get("Actual Rows"),
        "scan": scan["Node Type"] + (f" on {scan['Index Name']}" if "Index Name" in scan else ""),
        "loadavg": round(os.getloadavg()[0], 1),
    }


async def main_async(args: argparse.Namespace) -> None:
    with PgHarness() as pg:
        url = pg.create_database("expiry")
        store = await open_store(url)
        await store.close()
        con = await asyncpg.connect(url)
        try:
            rows = await _fill(con, args)
            print(json.dumps({"rows": rows, "expired_hours": args.expired_hours}), flush=True)
            for _ in range(args.rounds):
                for indexed in (True, False):
                    print(json.dumps(await _run(con, args.expired_hours * HOUR_MS, indexed)))
        finally:
            await con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=100)
    parser.add_argument("--cells", type=int, default=10)
    parser.add_argument("--expired-hours", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
