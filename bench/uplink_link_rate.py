"""A backlog drained over a slow metered link: time, duplicate deliveries and bytes sent.

    .venv/bin/python -m bench.uplink_link_rate [--batches 71] [--batch-bytes 4000] [--rate 2000]

Builds an outbox backlog of ``--batches`` bulk batches of about ``--batch-bytes`` each
(random samples, which zstd cannot shrink; the defaults are the size of a 2-hour backlog
after an outage: 71 batches, ~280 kB), then drains it with the uplink on its shipped
defaults (``UplinkSettings``: 20-s publish timeout, 16 in flight, 60-s resend) through a
real local mosquitto and the test consumer (commit, then end-to-end ack), behind a TCP
proxy capping each direction at ``--rate`` bytes per second (harness/faults/proxy.py).

Prints one JSON object: seconds until every batch was acknowledged end to end, the ideal
(backlog bytes / rate), duplicate deliveries at the consumer, bytes the proxy forwarded
upstream and their ratio to the backlog, publish timeouts and disconnects.

Bounded: gives up after ``--timeout`` seconds and reports what it got.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_agent.outbox import Outbox, Records
from edge_agent.uplink import Uplink, UplinkSettings
from harness import consumer
from harness.faults.proxy import LinkProxy
from harness.mosquitto import MosquittoHarness
from protocol.records import SignalSeries

FLEET, VEHICLE = "bench", "taxi-1"
T0 = 1_772_436_600_000
BYTES_PER_SAMPLE = 11  # a random float64 in msgpack plus its time offset, roughly


async def build_backlog(outbox: Outbox, batches: int, batch_bytes: int) -> int:
    """``batches`` closed bulk batches of random samples; their total wire bytes."""
    rng = random.Random(8)
    samples = max(1, batch_bytes // BYTES_PER_SAMPLE)
    for i in range(batches):
        start = T0 + i * 100_000
        times = tuple(start + k * 10 for k in range(samples))
        values = tuple(rng.random() for _ in range(samples))
        series = SignalSeries("WHL_SPD11.WHL_SPD_FL", times, values)
        await outbox.append(Records(signals=(series,)), start)
        await outbox.close_due_batches(start, force=True)
    due = await outbox.due_for_publish(limit=batches + 1, resend_after_ms=60_000)
    return sum(len(b.payload) for b in due)


async def drain(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    with MosquittoHarness(work) as broker:
        proc = await asyncio.to_thread(consumer.spawn, broker.port, work / "consumer.db")
        try:
            outbox = await Outbox.open(work / "outbox.db", fleet_id=FLEET, vehicle_id=VEHICLE)
            backlog = await build_backlog(outbox, args.batches, args.batch_bytes)
            with LinkProxy(broker.port) as proxy:
                proxy.set(rate_bytes_per_s=args.rate)
                settings = UplinkSettings(FLEET, VEHICLE, "127.0.0.1", proxy.port)
                uplink = Uplink(settings, outbox)
                stop = asyncio.Event()
                started = time.monotonic()
                task = asyncio.create_task(uplink.run(stop))
                deadline = started + args.timeout
                while uplink.counters.acked_batches < args.batches:
                    if time.monotonic() > deadline or task.done():
                        break
                    await asyncio.sleep(0.1)
                elapsed = time.monotonic() - started
                stop.set()
                await asyncio.wait_for(task, 30)
                sent = proxy.counters.bytes_up
            await outbox.close()
        finally:
            consumer.stop(proc)
    results = consumer.load_results(work / "consumer.db")
    counters = uplink.counters
    return {
        "batches": args.batches,
        "acked_batches": counters.acked_batches,
        "backlog_bytes": backlog,
        "rate_bytes_per_s": args.rate,
        "seconds": round(elapsed, 1),
        "ideal_seconds": round(backlog / args.rate, 1),
        "duplicate_deliveries": results.duplicates,
        "bytes_up": sent,
        "bytes_up_per_backlog_byte": round(sent / backlog, 2),
        "publish_timeouts": getattr(counters, "publish_timeouts", None),
        "disconnects": counters.disconnects,
        "measured_rate_bytes_per_s": getattr(counters, "link_rate_bytes_per_s", None),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=71)
    parser.add_argument("--batch-bytes", type=int, default=4000)
    parser.add_argument("--rate", type=int, default=2000, help="bytes per second, each way")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-link-rate-") as tmp:
        report = asyncio.run(drain(args, Path(tmp)))
    print(json.dumps(report, indent=2))
    return 0 if report["acked_batches"] == args.batches else 1


if __name__ == "__main__":
    sys.exit(main())
