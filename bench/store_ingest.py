"""The store's own cost of ingesting a batch, in process (no broker, no HTTP).

    .venv/bin/python -m bench.store_ingest [--vehicles 10] [--batches 30] [--store sqlite]

Ingests ``--batches`` batches per vehicle of ``bench.collector.real_batch``'s shape (10 s
of 20 signals, 1 Hz GNSS, a few events, a health snapshot) into a fresh store, one at a
time, and prints the time per batch (p50, p99, mean), records per second and its own CPU
per batch. The store is opened with the default ``[auth] k_anonymity``, as the collector
opens it with its k. It only calls ``Store.ingest``, so the same script measures any
revision of the store (run it with another checkout's ``cloud_collector`` first on
``PYTHONPATH``, from a directory outside both, for a before/after). Bounded by the batch count
and ``--timeout``. ``--store postgres``: a fresh database in a PostgreSQL started for the
bench (``harness/postgres.py``) instead of a SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from inspect import signature
from pathlib import Path

from bench.collector import real_batch
from cloud_collector.config import AuthConfig
from cloud_collector.store import open_store


async def measure(url: str, vehicles: int, batches: int, timeout_s: float) -> dict[str, float]:
    rng = random.Random(7)
    items = [(f"taxi-{v}", 1000 + v, s) for s in range(1, batches + 1) for v in range(vehicles)]
    prepared = [real_batch(v, e, s, rng) for v, e, s in items]
    # The collector opens its store with its k (the city's per-day sums then follow
    # ingest); a revision from before that parameter is opened as it was.
    k = {"k_anonymity": AuthConfig().k_anonymity}
    store = (
        await open_store(url, **k)
        if "k_anonymity" in signature(open_store).parameters
        else await open_store(url)
    )
    times: list[float] = []
    records = 0
    deadline = time.monotonic() + timeout_s
    cpu = time.process_time()
    try:
        for batch in prepared:
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            await store.ingest(
                batch, topic_channel="batch", payload_bytes=4000, received_ms=batch.header.sent_ms
            )
            times.append(time.perf_counter() - started)
            records += batch.header.counts.total
    finally:
        cpu = time.process_time() - cpu
        await store.close()
    times.sort()
    return {
        "batches": len(times),
        "ms_per_batch_p50": round(1000 * times[len(times) // 2], 2),
        "ms_per_batch_p99": round(1000 * times[int(len(times) * 0.99)], 2),
        "ms_per_batch_mean": round(1000 * statistics.fmean(times), 2),
        "records_per_s": round(records / sum(times)),
        # This process's CPU per batch (PostgreSQL's own work is not in it).
        "cpu_ms_per_batch": round(1000 * cpu / len(times), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=10)
    parser.add_argument("--batches", type=int, default=30, help="per vehicle")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    run = (args.vehicles, args.batches, args.timeout)
    if args.store == "postgres":
        from harness.postgres import PgHarness

        with PgHarness() as pg:
            result = asyncio.run(measure(pg.create_database("ingest"), *run))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-store-ingest-") as tmp:
            result = asyncio.run(measure(f"sqlite:///{Path(tmp) / 'store.sqlite3'}", *run))
    print(json.dumps({args.store: result}))


if __name__ == "__main__":
    main()
