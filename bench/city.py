"""A city's fleet on this machine: mosquitto, collector(s), the store and ``fleet-sim``.

    .venv/bin/python -m bench.city --taxis 100 --minutes 5 [--speed 1]
        [--store sqlite postgresql] [--collectors 1 2]

For each store and collector count, starts mosquitto, PostgreSQL (harness/postgres.py) when
asked, k ``cloud-collector run`` processes in one shared subscription group, then
``fleet-sim run`` for the given span of simulated time, and prints one JSON line with:
CPU (% of one core) and peak RSS of each component (from /proc), records per second,
urgent-event latency p50/p99 from record time to the stored row (receipts joined to
events) and to the end-to-end ack (measured by fleet-sim), payload bytes per taxi-hour,
and the reconnect storm after the city-wide outage (broker log: connections per second,
time until the last taxi is back, time until the outage's records are stored).

Bounded: fleet-sim runs with ``--timeout`` (the span plus ``--drain-s``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.collector import CollectorProcess, write_config
from harness.mosquitto import MosquittoHarness, free_port
from harness.postgres import PgHarness
from protocol.contracts import URGENT_EVENT_TYPES

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
CONNECT = re.compile(r"^(\d+): New client connected .* as (agent-\S+)")


# -- /proc ---------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _tree(root: int, tree: dict[int, list[int]]) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(tree.get(pid, []))
    return pids


def _usage(pid: int) -> tuple[int, int]:
    """(CPU ticks, RSS bytes) of one process, 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0
    return int(fields[11]) + int(fields[12]), int(fields[21]) * PAGE


def _main_thread_ticks(pid: int) -> int:
    """CPU ticks of a process's main thread (a fleet-sim worker's event loop), 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


@dataclass
class Sampler:
    """CPU and memory of named process trees, once a second, in a thread."""

    roots: dict[str, int]
    ticks: dict[str, dict[int, int]] = field(default_factory=dict)
    main_ticks: dict[str, dict[int, int]] = field(default_factory=dict)
    peak_rss: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)

    def run(self) -> None:
        while not self.stop.wait(1.0):
            tree = _children()
            for name, root in self.roots.items():
                rss = 0
                seen = self.ticks.setdefault(name, {})
                main = self.main_ticks.setdefault(name, {})
                for pid in _tree(root, tree):
                    cpu, mem = _usage(pid)
                    if cpu:
                        seen[pid] = max(seen.get(pid, 0), cpu)
                        main[pid] = max(main.get(pid, 0), _main_thread_ticks(pid))
                    rss += mem
                self.peak_rss[name] = max(self.peak_rss[name], rss)

    def report(self) -> dict[str, Any]:
        wall = time.monotonic() - self.started

        def seconds(ticks: dict[str, dict[int, int]]) -> dict[str, float]:
            return {name: sum(ticks.get(name, {}).values()) / CLK_TCK for name in self.roots}

        cpu_s, main_s = seconds(self.ticks), seconds(self.main_ticks)
        return {
            name: {
                "cpu_pct": round(cpu_s[name] / wall * 100, 1),
                "cpu_s": round(cpu_s[name], 2),  # user + system, the whole process tree
                # of which the processes' main threads (event loops) and all other threads
                "main_threads_cpu_s": round(main_s[name], 2),
                "other_threads_cpu_s": round(cpu_s[name] - main_s[name], 2),
                "peak_rss_mib": round(self.peak_rss[name] / 2**20, 1),
            }
            for name in self.roots
        }


# -- the store's view ----------------------------------------------------------------------

LATENCY_SQL = (
    "SELECT e.time_ms, r.received_ms FROM events e JOIN receipts r"
    " ON r.vehicle = e.vehicle AND r.epoch = e.epoch AND r.seq = e.seq"
    " WHERE e.type IN ({types})"
)
OUTAGE_SQL = (
    "SELECT MAX(r.received_ms) FROM events e JOIN receipts r"
    " ON r.vehicle = e.vehicle AND r.epoch = e.epoch AND r.seq = e.seq"
    " WHERE e.time_ms >= {a} AND e.time_ms < {b}"
)


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            return list(db.execute(sql))
    import asyncpg

    async def fetch() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 1)


def store_figures(url: str, summary: dict[str, Any]) -> dict[str, Any]:
    real0, start, speed = summary["real_start_ms"], summary["start_ms"], summary["speed"]
    types = ",".join(f"'{t}'" for t in sorted(URGENT_EVENT_TYPES))
    lat = [
        received - (real0 + (t - start) / speed)
        for t, received in _rows(url, LATENCY_SQL.format(types=types))
    ]
    out: dict[str, Any] = {
        "urgent_stored_latency_ms_p50": _pct(lat, 50),
        "urgent_stored_latency_ms_p99": _pct(lat, 99),
        "urgent_events_stored": len(lat),
    }
    window = summary.get("outage_real_ms")
    if window:
        a = start + (window[0] - real0) * speed
        b = start + (window[1] - real0) * speed
        (last,) = _rows(url, OUTAGE_SQL.format(a=int(a), b=int(b)))[0]
        out["outage_records_stored_after_s"] = (
            None if last is None else round((last - window[1]) / 1000, 1)
        )
    return out


def storm(log_text: str, summary: dict[str, Any]) -> dict[str, Any]:
    window = summary.get("outage_real_ms")
    if not window:
        return {}
    end_s = window[1] / 1000
    per_s: Counter[int] = Counter()
    first: dict[str, int] = {}  # client -> its first connect after the outage
    for line in log_text.splitlines():
        m = CONNECT.match(line)
        if m and int(m.group(1)) >= int(end_s):
            per_s[int(m.group(1))] += 1
            first.setdefault(m.group(2), int(m.group(1)))
    if not per_s:
        return {"storm_connects": 0}
    ordered = sorted(first.values())
    return {
        "storm_connects": sum(per_s.values()),
        "storm_peak_connects_per_s": max(per_s.values()),
        "storm_clients_back": len(first),
        "storm_half_back_after_s": round(ordered[len(ordered) // 2] - end_s + 1, 1),
        "storm_all_back_after_s": round(ordered[-1] - end_s + 1, 1),
    }


# -- one configuration ---------------------------------------------------------------------


def run_one(args: argparse.Namespace, store: str, k: int, pg: PgHarness | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-city-") as tmp_name:
        tmp = Path(tmp_name)
        url = f"sqlite:///{tmp / 'store.sqlite3'}"
        if pg is not None:
            url = pg.create_database(f"city{int(time.time())}k{k}")
        with MosquittoHarness(tmp, extra_config="max_connections -1") as broker:
            collectors = []
            for i in range(k):
                port = free_port()
                cfg = write_config(
                    tmp / f"collector{i}.toml", mqtt_port=broker.port, http_port=port,
                    store_url=url, client_id=f"collector-{i + 1}",
                )  # fmt: skip
                c = CollectorProcess(cfg, port, tmp / f"collector{i}.log")
                c.start(timeout_s=60)
                collectors.append(c)
            try:
                return _drive(args, tmp, broker, collectors, url, pg)
            finally:
                for c in collectors:
                    c.kill()


def _drive(
    args: argparse.Namespace,
    tmp: Path,
    broker: MosquittoHarness,
    collectors: list[CollectorProcess],
    url: str,
    pg: PgHarness | None,
) -> dict[str, Any]:
    hours = args.minutes / 60 * args.speed
    cmd = [
        sys.executable, "-m", "fleet_sim", "run", "--taxis", str(args.taxis),
        "--hours", f"{hours:.6f}", "--speed", str(args.speed),
        "--broker", f"127.0.0.1:{broker.port}", "--out", str(tmp / "out"),
        "--timeout", str(args.minutes * 60 + args.drain_s),
    ]  # fmt: skip
    if args.processes:
        cmd += ["--processes", str(args.processes)]
    sim = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    roots = {"broker": broker._proc.pid if broker._proc else 0, "fleet_sim": sim.pid}
    for i, c in enumerate(collectors):
        roots[f"collector{i + 1}"] = c.proc.pid if c.proc else 0
    if pg is not None:
        roots["postgresql"] = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    sampler = Sampler(roots)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    try:
        out, _ = sim.communicate(timeout=args.minutes * 60 + args.drain_s + 60)
    finally:
        if sim.poll() is None:
            sim.terminate()  # it stops its workers
            sim.wait(30)
        sampler.stop.set()
        thread.join()
    summary = json.loads(out.strip().splitlines()[-1])["summary"]
    result: dict[str, Any] = {
        "fleet_sim_exit": sim.returncode,
        "records_per_s": round(summary["records"] / max(summary["wall_s"], 1e-9)),
        **{key: summary[key] for key in (
            "taxis", "taxis_done", "records", "batches_acked", "bytes_per_taxi_hour", "wall_s",
            "urgent_ack_latency_ms_p50", "urgent_ack_latency_ms_p99", "connects", "power_cuts",
        )},
        **store_figures(url, summary),
        **storm(broker.log_path.read_text(errors="replace"), summary),
        "components": sampler.report(),
    }  # fmt: skip
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--taxis", type=int, default=100)
    p.add_argument("--minutes", type=float, default=5.0, help="real minutes of driving")
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--processes", type=int, default=0)
    p.add_argument("--drain-s", type=float, default=300.0)
    p.add_argument("--store", nargs="+", default=["sqlite", "postgresql"])
    p.add_argument("--collectors", type=int, nargs="+", default=[1])
    args = p.parse_args()
    print(f"# load average before: {os.getloadavg()}", file=sys.stderr)
    for store in args.store:
        for k in args.collectors:
            if store == "sqlite" and k > 1:
                continue  # one writer: a shared group on SQLite is not a deployment
            if store == "postgresql":
                with PgHarness() as pg:
                    result = run_one(args, store, k, pg)
            else:
                result = run_one(args, store, k, None)
            print(json.dumps({"store": store, "collectors": k, **result}), flush=True)
    print(f"# load average after: {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    main()
