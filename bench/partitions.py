"""Benchmark: the PostgreSQL store's ingest rate, bytes per stored row, and what retention
costs, dropping a partition against deleting the same rows.

    .venv/bin/python -m bench.partitions [--vehicles 50] [--batches 40] [--concurrency 8]

Starts its own PostgreSQL (harness/postgres.py), opens the store (all migrations), makes
the time partitions the collector would (when the tree has them), then ingests
``vehicles x batches`` batches shaped like the agent's (``bench.collector.real_batch``:
10 s of 20 signals, 1 Hz GNSS, a few events, a health snapshot) straight into the store
with ``--concurrency`` transactions at once: no broker and no decoding, so the rate is
the database path alone (each batch one ingest transaction: records, cell-hour
aggregates, receipts and acks). Then the bytes per row of each time series table (heap,
indexes and TOAST, summed over its partitions), and the time to remove one day of
samples by ``DROP TABLE`` of its partition against ``DELETE`` of the same rows from an
unpartitioned copy with the same index. Bounded: every batch is ingested once.

``--routing`` measures only what partitioning adds to an insert: 50,000 sample rows by
executemany into a plain table and into a partitioned one, alternately, 5 rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any

import asyncpg

from bench.collector import T0, real_batch
from cloud_collector.store import Store, open_store
from harness.postgres import PgHarness

TABLES = ("samples", "gnss", "events", "health")
DAY_MS = 86_400_000


async def _partitioned(store: Store, now_ms: int) -> bool:
    try:
        from cloud_collector.store.maintenance import maintenance_for
    except ImportError:  # a tree before time partitions, for a side-by-side run
        return False
    await maintenance_for(store).ensure_partitions(now_ms, {})
    return True


async def _ingest(store: Store, vehicles: int, batches: int, concurrency: int) -> dict[str, Any]:
    rng = random.Random(7)
    work = [
        real_batch(f"taxi-{v}", 1, seq, rng)
        for seq in range(1, batches + 1)
        for v in range(vehicles)
    ]
    records = sum(b.header.counts.total for b in work)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for b in work:
        queue.put_nowait(b)

    async def worker() -> None:
        while not queue.empty():
            b = queue.get_nowait()
            await store.ingest(b, topic_channel="batch", payload_bytes=4000, received_ms=T0)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return {
        "batches": len(work),
        "records": records,
        "seconds": round(seconds, 2),
        "records_per_s": round(records / seconds),
        "batches_per_s": round(len(work) / seconds, 1),
    }


async def _bytes_per_row(con: asyncpg.Connection) -> dict[str, dict[str, float]]:
    out = {}
    for table in TABLES:
        rows = int(await con.fetchval(f"SELECT COUNT(*) FROM {table}"))
        size = int(
            await con.fetchval(
                "SELECT COALESCE(SUM(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits"
                " WHERE inhparent = $1::regclass",
                table,
            )
        ) or int(await con.fetchval("SELECT pg_total_relation_size($1::regclass)", table))
        out[table] = {"rows": rows, "bytes_per_row": round(size / rows, 1) if rows else 0.0}
    return out


async def _removal(con: asyncpg.Connection) -> dict[str, Any]:
    """One day of samples: DELETE from an unpartitioned copy, then DROP of its partition."""
    day = await con.fetchrow(
        "SELECT c.relname, COUNT(*) FROM samples s JOIN pg_class c ON c.oid = s.tableoid"
        " GROUP BY c.relname ORDER BY COUNT(*) DESC LIMIT 1"
    )
    assert day is not None
    name, rows = day[0], int(day[1])
    await con.execute(f"CREATE TABLE bench_copy AS SELECT * FROM {name}")
    await con.execute("CREATE INDEX ON bench_copy (vehicle, name, time_ms)")
    await con.execute("VACUUM ANALYZE bench_copy")
    started = time.perf_counter()
    await con.execute("DELETE FROM bench_copy")
    delete_s = time.perf_counter() - started
    out: dict[str, Any] = {"rows": rows, "delete_s": round(delete_s, 3)}
    if name != "samples":
        started = time.perf_counter()
        await con.execute(f"DROP TABLE {name}")
        out["drop_partition_s"] = round(time.perf_counter() - started, 3)
    await con.execute("DROP TABLE bench_copy")
    return out


async def _routing(url: str, rows: int, rounds: int) -> dict[str, Any]:
    """The cost of tuple routing alone: the same sample rows inserted with executemany
    (as ingest does) into a plain table and into one partitioned by day, alternately in
    one database, so the machine's load falls on both alike."""
    con = await asyncpg.connect(url)
    columns = "vehicle TEXT NOT NULL, name TEXT NOT NULL, time_ms BIGINT NOT NULL, value DOUBLE PRECISION, unit TEXT NOT NULL"  # noqa: E501 - the samples table's columns
    day = T0 - T0 % DAY_MS
    try:
        await con.execute(f"CREATE TABLE r_plain ({columns})")
        await con.execute(f"CREATE TABLE r_part ({columns}) PARTITION BY RANGE (time_ms)")
        await con.execute("CREATE TABLE r_part_default PARTITION OF r_part DEFAULT")
        await con.execute(
            "CREATE TABLE r_part_day PARTITION OF r_part"
            f" FOR VALUES FROM ({day}) TO ({day + DAY_MS})"
        )
        for table in ("r_plain", "r_part"):
            await con.execute(f"CREATE INDEX ON {table} (vehicle, name, time_ms)")
        data = [(f"taxi-{i % 50}", f"signal_{i % 20}", T0 + i, 1.5, "unit") for i in range(rows)]
        seconds: dict[str, list[float]] = {"r_plain": [], "r_part": []}
        for _ in range(rounds):
            for table in ("r_plain", "r_part"):
                started = time.perf_counter()
                async with con.transaction():
                    await con.executemany(f"INSERT INTO {table} VALUES ($1, $2, $3, $4, $5)", data)
                seconds[table].append(time.perf_counter() - started)
    finally:
        await con.close()
    return {table: [round(rows / s) for s in times] for table, times in seconds.items()} | {
        "unit": "rows/s per round"
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with PgHarness() as pg:
        url = pg.create_database("bench")
        if args.routing:
            return {"routing": await _routing(url, 50_000, 5)}
        store = await open_store(url)
        try:
            partitioned = await _partitioned(store, T0)
            ingest = await _ingest(store, args.vehicles, args.batches, args.concurrency)
        finally:
            await store.close()
        con = await asyncpg.connect(url)
        try:
            await con.execute("VACUUM ANALYZE")
            sizes = await _bytes_per_row(con)
            removal = await _removal(con)
        finally:
            await con.close()
    return {"partitioned": partitioned, "ingest": ingest, "tables": sizes, "one_day": removal}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--vehicles", type=int, default=50)
    p.add_argument("--batches", type=int, default=40, help="per vehicle (10 s of driving each)")
    p.add_argument("--concurrency", type=int, default=8, help="ingest transactions at once")
    p.add_argument("--routing", action="store_true", help="only: plain against partitioned inserts")
    return p


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(_parser().parse_args())), indent=2))
