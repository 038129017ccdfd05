"""Collector throughput and end-to-end ack latency, through a real local mosquitto.

    .venv/bin/python -m bench.collector [--vehicles 50] [--batches 40] [--store sqlite postgresql]

For each store, starts mosquitto and one ``cloud-collector run`` process (PostgreSQL via
harness/postgres.py), then many simulated vehicles publish batches shaped like real ones
(10 s of 20 thinned signals, GNSS at 1 Hz, a few events, a health snapshot: ~520 records,
a few kB after zstd) with QoS 1, each vehicle keeping a window of unacknowledged batches
in flight like the agent does. Reports records per second per collector process (first
publish to last end-to-end ack) and the publish-to-ack latency p50/p99.

Bounded: every phase has a deadline (``--timeout``), and the run stops there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from protocol import Batch, Event, FrameRef, GnssFix, Health, SignalSeries, decode_ack, encode_batch

FLEET = "bench"
T0 = 1_772_436_600_000
SIGNALS = 20
SAMPLES_PER_SIGNAL = 25


def real_batch(vehicle: str, epoch: int, seq: int, rng: random.Random) -> Batch:
    """One 10-second batch like the agent's: thinned signals, 1 Hz GNSS, events, health."""
    base = T0 + seq * 10_000
    lat, lon = 37.5648 + rng.uniform(-0.02, 0.02), 126.9781 + rng.uniform(-0.02, 0.02)
    fixes = [
        GnssFix(base + 1000 * i, lat + i * 1e-4, lon + i * 1e-4, 3, 30.0, 8.3, 45.0, 3)
        for i in range(10)
    ]
    signals = [
        SignalSeries(
            f"signal_{k}",
            tuple(sorted(rng.sample(range(base, base + 10_000), SAMPLES_PER_SIGNAL))),
            tuple(round(rng.uniform(0, 100), 2) for _ in range(SAMPLES_PER_SIGNAL)),
            "unit",
        )
        for k in range(SIGNALS)
    ]
    events = [
        Event(
            rng.choice(("fcw", "ldw_left", "speed_sign", "harsh_braking")),
            base + rng.randrange(10_000),
            rng.uniform(10, 80),
            fixes[rng.randrange(10)],
            FrameRef("can0", 0x700),
            {"sound_code": rng.randrange(8)},
        )
        for _ in range(rng.randrange(1, 4))
    ]
    health = [Health(base + 9_999, {"outbox_batches": 3, "cpu_load": 0.2, "can0_up": True})]
    return Batch.build(
        fleet_id=FLEET, vehicle_id=vehicle, epoch=epoch, seq=seq, sent_ms=base + 10_000,
        signals=signals, events=events, gnss=fixes, health=health,
    )  # fmt: skip


@dataclass
class Run:
    sent_at: dict[tuple[str, int], float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_ack: float = 0.0


async def _vehicle(
    client: aiomqtt.Client,
    vehicle: str,
    payloads: list[bytes],
    *,
    run: Run,
    window: int,
    end: float,
) -> None:
    """Publish with at most ``window`` batches awaiting their end-to-end ack."""
    for seq, data in enumerate(payloads, start=1):
        while seq - run.acked.get(vehicle, 0) > window and time.monotonic() < end:
            run.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.changed.wait(), 0.5)
        if time.monotonic() >= end:
            return
        run.sent_at[(vehicle, seq)] = time.monotonic()
        await client.publish(f"fleet/{FLEET}/{vehicle}/batch", data, qos=1)


async def drive(port: int, payloads: dict[str, list[bytes]], window: int, limit_s: float) -> Run:
    run = Run()
    end = time.monotonic() + limit_s
    total = {v: len(p) for v, p in payloads.items()}
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="bench-fleet", protocol=aiomqtt.ProtocolVersion.V5,
        max_queued_incoming_messages=0,
    ) as client:  # fmt: skip
        client.pending_calls_threshold = 1 << 20  # many concurrent publishes are the point here
        await client.subscribe(f"fleet/{FLEET}/+/ack", qos=1)

        async def acks() -> None:
            async for msg in client.messages:
                assert isinstance(msg.payload, bytes)
                ack = decode_ack(msg.payload)
                now = time.monotonic()
                prev = run.acked.get(ack.vehicle_id, 0)
                for s in range(prev + 1, ack.seq + 1):
                    sent = run.sent_at.get((ack.vehicle_id, s))
                    if sent is not None:
                        run.latencies.append(now - sent)
                run.acked[ack.vehicle_id] = max(prev, ack.seq)
                run.last_ack = now
                run.changed.set()
                if all(run.acked.get(v, 0) >= n for v, n in total.items()):
                    return

        reader = asyncio.create_task(acks())
        async with asyncio.TaskGroup() as tg:
            for vehicle, data in payloads.items():
                tg.create_task(_vehicle(client, vehicle, data, run=run, window=window, end=end))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, max(0.1, end - time.monotonic()))
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    return run


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def bench_store(
    store_url: str, payloads: dict[str, list[bytes]], records: int, args: Any
) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from harness.collector import CollectorProcess, write_config
    from harness.mosquitto import MosquittoHarness, free_port

    with (
        tempfile.TemporaryDirectory(prefix="bench-collector-") as tmp,
        MosquittoHarness(Path(tmp)) as broker,
    ):
        http_port = free_port()
        cfg = write_config(
            Path(tmp) / "collector.toml", mqtt_port=broker.port, http_port=http_port,
            store_url=store_url.replace("{tmp}", tmp),
        )  # fmt: skip
        collector = CollectorProcess(cfg, http_port, Path(tmp) / "collector.log")
        collector.start()
        try:
            started = time.monotonic()
            run = asyncio.run(drive(broker.port, payloads, args.window, args.timeout))
            elapsed = (run.last_ack or time.monotonic()) - started
        finally:
            collector.kill()
    acked_batches = sum(run.acked.values())
    total_batches = sum(len(p) for p in payloads.values())
    done_records = records * acked_batches // max(1, total_batches)
    return {
        "batches_acked": acked_batches,
        "batches_sent": total_batches,
        "records": done_records,
        "seconds": round(elapsed, 3),
        "records_per_s": round(done_records / elapsed) if elapsed > 0 else None,
        "batches_per_s": round(acked_batches / elapsed, 1) if elapsed > 0 else None,
        "ack_latency_ms_p50": round(_pct(run.latencies, 50) * 1000, 1),
        "ack_latency_ms_p99": round(_pct(run.latencies, 99) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=50)
    parser.add_argument("--batches", type=int, default=40, help="per vehicle")
    parser.add_argument("--window", type=int, default=8, help="unacked batches per vehicle")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per store")
    parser.add_argument(
        "--store", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"]
    )
    args = parser.parse_args()
    rng = random.Random(1)
    payloads: dict[str, list[bytes]] = {}
    records = 0
    size = 0
    for v in range(args.vehicles):
        vehicle = f"taxi-{v:04d}"
        batches = [real_batch(vehicle, 1000 + v, s, rng) for s in range(1, args.batches + 1)]
        records += sum(b.header.counts.total for b in batches)
        payloads[vehicle] = [encode_batch(b) for b in batches]
        size += sum(len(p) for p in payloads[vehicle])
    n = args.vehicles * args.batches
    print(
        f"# {args.vehicles} vehicles x {args.batches} batches, {records / n:.0f} records and "
        f"{size / n / 1024:.1f} KiB per batch",
        file=sys.stderr,
    )
    results: dict[str, Any] = {}
    for kind in args.store:
        if kind == "sqlite":
            results[kind] = bench_store("sqlite:///{tmp}/bench.sqlite3", payloads, records, args)
        else:
            from harness.postgres import PgHarness

            with PgHarness() as pg:
                url = pg.create_database("bench")
                results[kind] = bench_store(url, payloads, records, args)
        print(json.dumps({kind: results[kind]}), flush=True)


if __name__ == "__main__":
    main()
