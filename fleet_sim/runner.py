"""``fleet-sim run``: worker processes, each running many taxis in one event loop.

The parent writes the truth, starts the workers, prints a progress line from their
reports and a summary at the end. Every worker derives the simulated clock from the same
real start time, so the city's outage and each taxi's shifts line up across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import queue
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

from edge_agent.uplink import UplinkSettings
from fleet_sim.model import TaxiModel, seconds
from fleet_sim.taxi import Counts, Latency, Outage, SimClock, Taxi, settings_for
from fleet_sim.truth import Truth

REPORT_S: Final = 1.0
PROGRESS_S: Final = 2.0


@dataclass(frozen=True)
class Job:
    truth: Truth
    taxis: int
    speed: float
    out: Path
    fleet: str
    base: UplinkSettings
    real_start: float
    processes: int


def vehicle_id(index: int) -> str:
    return f"t{index:04d}"


@dataclass
class Report:
    worker: int
    counts: Counts
    online: int
    taxis: int


async def _worker(job: Job, worker: int, reports: multiprocessing.Queue[Report]) -> None:
    truth = job.truth
    clock = SimClock(job.real_start, job.speed, seconds(truth.hours))
    outage = Outage(truth.outage, clock)
    counts = Counts()
    latency = Latency(clock, truth.start_ms)
    (job.out / "outbox").mkdir(parents=True, exist_ok=True)
    taxis = [
        Taxi(
            i,
            TaxiModel(truth, i),
            settings_for(job.base, job.fleet, vehicle_id(i)),
            clock,
            outage,
            job.out / "outbox" / f"{vehicle_id(i)}.sqlite3",
            counts,
            latency,
        )
        for i in range(worker, job.taxis, job.processes)
    ]
    watcher = asyncio.create_task(outage.watch())

    parent = os.getppid()

    async def report() -> None:
        while True:
            if os.getppid() != parent:  # the parent is gone: nobody reads, nobody stops us
                raise SystemExit(1)
            online = sum(1 for t in taxis if t.session is not None and t.session.online)
            reports.put(Report(worker, counts, online, len(taxis)))
            await asyncio.sleep(REPORT_S)

    reporter = asyncio.create_task(report())
    try:
        async with asyncio.TaskGroup() as tg:
            for taxi in taxis:
                tg.create_task(taxi.run())
    finally:
        reporter.cancel()
        watcher.cancel()
        stats = job.out / "stats"
        stats.mkdir(exist_ok=True)
        (stats / f"ack-latency-{worker}.json").write_text(json.dumps(latency.samples))
        reports.put(Report(worker, counts, 0, len(taxis)))


def worker_main(job: Job, worker: int, reports: multiprocessing.Queue[Report]) -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)
    try:
        import uvloop

        uvloop.run(_worker(job, worker, reports))
    except ImportError:
        asyncio.run(_worker(job, worker, reports))


@dataclass
class Progress:
    reports: dict[int, Report] = field(default_factory=dict)

    def total(self) -> Counts:
        total = Counts()
        for r in self.reports.values():
            for key, value in asdict(r.counts).items():
                setattr(total, key, getattr(total, key) + value)
        return total

    def line(self, job: Job) -> str:
        c = self.total()
        online = sum(r.online for r in self.reports.values())
        sim = min(seconds(job.truth.hours), int((time.time() - job.real_start) * job.speed))
        return (
            f"fleet-sim: {online}/{job.taxis} online, {c.records} records, {c.acked} batches acked,"
            f" sim {_hms(sim)}/{_hms(seconds(job.truth.hours))}, {c.done} done"
        )


def _hms(s: int) -> str:
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _follow(
    job: Job,
    procs: Sequence[multiprocessing.process.BaseProcess],
    reports: multiprocessing.Queue[Report],
    progress: Progress,
    timeout_s: float,
) -> None:
    """Progress lines until every worker has ended or ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    next_line = time.monotonic()
    while time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            r = reports.get(timeout=0.5)
            progress.reports[r.worker] = r
        if time.monotonic() >= next_line:
            next_line = time.monotonic() + PROGRESS_S
            print(progress.line(job), file=sys.stderr, flush=True)
        if all(not p.is_alive() for p in procs):
            break
    while True:  # the workers' last reports
        try:
            r = reports.get(timeout=0.2)
        except queue.Empty:
            return
        progress.reports[r.worker] = r


def run(job: Job, timeout_s: float) -> tuple[bool, Progress]:
    """Run the workers until every taxi is acknowledged or ``timeout_s``; True when done."""
    ctx = multiprocessing.get_context("spawn")
    reports: multiprocessing.Queue[Report] = ctx.Queue()
    procs = [
        ctx.Process(target=worker_main, args=(job, w, reports), daemon=True)
        for w in range(job.processes)
    ]
    for p in procs:
        p.start()
    progress = Progress()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        _follow(job, procs, reports, progress, timeout_s)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(10)
    done = progress.total().done == job.taxis
    return done, progress


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 1)


def summary(job: Job, progress: Progress, wall_s: float) -> dict[str, object]:
    c = progress.total()
    hours = job.truth.hours
    samples: list[float] = []
    for path in sorted((job.out / "stats").glob("ack-latency-*.json")):
        samples += json.loads(path.read_text())
    outage = job.truth.outage
    return {
        "real_start_ms": round(job.real_start * 1000),
        "start_ms": job.truth.start_ms,
        "outage_real_ms": None
        if outage is None
        else [round((job.real_start + s / job.speed) * 1000) for s in outage],
        "urgent_ack_latency_ms_p50": _pct(samples, 50),
        "urgent_ack_latency_ms_p99": _pct(samples, 99),
        "urgent_ack_samples": len(samples),
        "taxis": job.taxis,
        "simulated_hours": hours,
        "speed": job.speed,
        "wall_s": round(wall_s, 1),
        "records": c.records,
        "batches_acked": c.acked,
        "published_bytes": c.published_bytes,
        "bytes_per_taxi_hour": round(c.published_bytes / max(1e-9, job.taxis * hours)),
        "km": round(c.km, 1),
        "connects": c.connects,
        "power_cuts": c.power_cuts,
        "ignition_offs": c.ignition_offs,
        "taxis_done": c.done,
    }


def print_summary(data: dict[str, object]) -> None:
    print(
        f"fleet-sim: {data['taxis_done']}/{data['taxis']} taxis acknowledged end to end;"
        f" {data['records']} records, {data['batches_acked']} batches, {data['km']} km,"
        f" {data['power_cuts']} power cuts, {data['ignition_offs']} ignition offs,"
        f" {data['bytes_per_taxi_hour']} bytes/taxi-hour, {data['wall_s']} s"
    )
    print(json.dumps({"summary": data}))
