"""API load against ingest: does a flood of /v1/events requests hold up ingest or /readyz?

    .venv/bin/python -m bench.api_load [--store sqlite] [--events 86000] [--workers 300]
        [--clients 50] [--big-share 0.3] [--answers 3] [--vehicles 10] [--batches 20]
        [--unbounded] [--api-processes 1] [--nice 10]
        [--token T] [--collector-src CHECKOUT]

Starts mosquitto and one ``cloud-collector run`` process (harness/), loads ``--events``
events through MQTT, then measures the end-to-end ack latency of a replay (``--vehicles``
vehicles each publishing ``--batches`` batches like the agent's, one awaiting its ack at
a time) twice: idle, and while ``--workers`` concurrent HTTP workers (a separate process,
spread over ``--clients`` loopback source addresses 127.0.0.2...) each want ``--answers``
answers of /v1/events, ``--big-share`` of them with ``limit=10000``, and wait as a 429's
Retry-After says. A thread probes
/readyz every 0.2 s throughout the loaded phase, on the API port and on the metrics
listener (served by the collector's ingest process). ``--unbounded`` lifts the collector's
HTTP limits (rate and concurrency) to show what they prevent. ``--api-processes`` and
``--nice`` are the collector's ``[http] processes`` and ``nice`` (0 processes: the API in
the ingest process, as before they existed).

Prints one JSON line: ack p50/p99 idle and under load, their ratio, /readyz latency
p50/p99/max under load, the API answers by status with the latency of the 200s, and
the CPU seconds of each process per phase (from /proc: the collector's ingest process,
its API processes, the load generator) with the load average, since on a shared machine
wall-clock figures depend on everyone else's work.
Bounded: requests per worker (``--max-requests``), and every phase has a deadline
(``--timeout``). Loopback only. Every HTTP request goes through ``_headers`` (a bearer
token from ``--token`` or ``COLLECTOR_TOKEN``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.collector import FLEET, T0, Run, _pct, drive, real_batch
from protocol import Batch, Event, FrameRef, GnssFix, encode_batch

EVENTS_PER_BATCH = 200
UNBOUNDED = (
    "rate_per_s = 1000000.0\nrate_burst = 1000000\n"
    "max_concurrent = 10000\nmax_concurrent_per_client = 10000"
)


def _headers(token: str | None) -> dict[str, str]:
    """The one place a header every request needs is added."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def preload_payloads(events: int) -> dict[str, list[bytes]]:
    """``events`` events in batches of ``EVENTS_PER_BATCH``, over 20 vehicles."""
    rng = random.Random(7)
    out: dict[str, list[bytes]] = {}
    n_batches = max(1, events // EVENTS_PER_BATCH)
    for i in range(n_batches):
        vehicle = f"load-{i % 20:02d}"
        seq = len(out.setdefault(vehicle, [])) + 1
        base = T0 + seq * 60_000
        evts = [
            Event(
                rng.choice(("fcw", "ldw_left", "pcw", "headway_warning")),
                base + k * 250,
                rng.uniform(10, 80),
                GnssFix(
                    base + k * 250,
                    37.5 + rng.uniform(0, 0.1),
                    126.9 + rng.uniform(0, 0.1),
                    3,
                    30.0,
                    8.0,
                    10.0,
                    0,
                ),
                FrameRef("can0", 0x700),
                {"sound_code": rng.randrange(8)},
            )
            for k in range(EVENTS_PER_BATCH)
        ]
        batch = Batch.build(
            fleet_id=FLEET, vehicle_id=vehicle, epoch=5000 + i % 20, seq=seq,
            sent_ms=base + 60_000, events=evts,
        )  # fmt: skip
        out[vehicle].append(encode_batch(batch))
    return out


def replay_payloads(tag: str, vehicles: int, batches: int) -> dict[str, list[bytes]]:
    rng = random.Random(tag)
    return {
        f"{tag}-{v:03d}": [
            encode_batch(real_batch(f"{tag}-{v:03d}", 100 + v, s, rng))
            for s in range(1, batches + 1)
        ]
        for v in range(vehicles)
    }


# ---------------------------------------------------------------- the load (own process)


async def _worker(
    base: str,
    source: str,
    big: bool,
    args: dict[str, Any],
    events: tuple[Any, Any],
    out: list[Any],
) -> None:
    running, stop = events
    stop_at = time.monotonic() + args["timeout"]
    answered = 0
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(
        transport=transport, base_url=base, headers=_headers(args["token"]), timeout=120
    ) as client:
        for _ in range(args["max_requests"]):
            if time.monotonic() >= stop_at or stop.is_set():
                return
            params = {"limit": "10000"} if big else {}
            started = time.monotonic()
            status: int | str
            try:
                r = await client.get("/v1/events", params=params)
                status = r.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            out.append((status, time.monotonic() - started, big))
            running.set()
            if status == 429:  # a client that honours Retry-After (with jitter)
                wait = float(r.headers.get("retry-after", "1"))
                await asyncio.sleep(wait * random.uniform(1.0, 1.5))
            elif status != 200:
                await asyncio.sleep(0.5)
            else:
                answered += 1
                if answered >= args["answers"]:
                    return


async def _load(base: str, args: dict[str, Any], events: tuple[Any, Any]) -> list[Any]:
    out: list[Any] = []
    rng = random.Random(3)
    async with asyncio.TaskGroup() as tg:
        for w in range(args["workers"]):
            source = f"127.0.0.{2 + w % args['clients']}"
            big = rng.random() < args["big_share"]
            tg.create_task(_worker(base, source, big, args, events, out))
    return out


def load_process(base: str, args: dict[str, Any], results: Any, events: tuple[Any, Any]) -> None:
    """The HTTP load, in a process of its own: ``events`` are (running, stop)."""
    answers = asyncio.run(_load(base, args, events))
    results.put((answers, time.process_time()))


# ---------------------------------------------------------------- /readyz probe (thread)


def probe_readyz(base: str, token: str | None, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(base_url=base, headers=_headers(token), timeout=30) as client:
        while not stop.is_set() and len(out) < 100_000:
            started = time.monotonic()
            with contextlib.suppress(httpx.HTTPError):
                client.get("/readyz")
            out.append(time.monotonic() - started)
            stop.wait(0.2)


# ---------------------------------------------------------------- CPU from /proc


def cpu_s(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of ``pid`` (its thread ``tid`` alone, when given) so far
    (0 when it is gone)."""
    stat = Path(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat")
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def cpu_snapshot(pid: int) -> dict[str, float]:
    """CPU seconds of the collector's own process and each of its API processes (and of
    their main threads, the event loop, alone: ``loop:<pid>``)."""
    out = {"ingest": cpu_s(pid)}
    for c in children(pid):
        out[str(c)] = cpu_s(c)
        out[f"loop:{c}"] = cpu_s(c, c)
    return out


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds between two snapshots: the ingest process, the API processes together."""
    api = sum(v - before.get(k, 0.0) for k, v in after.items() if k.isdigit())
    loop = sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith("loop:"))
    return {
        "ingest_cpu_s": round(after["ingest"] - before["ingest"], 2),
        "api_cpu_s": round(api, 2),
        "api_loop_thread_cpu_s": round(loop, 2),
        "loadavg_1m": round(os.getloadavg()[0], 1),
    }


# ---------------------------------------------------------------- the run


def _ms(values: list[float], p: float) -> float:
    return round(_pct(values, p) * 1000, 1)


def _loaded_phase(
    port: int, base: str, args: argparse.Namespace, pid: int, probe_base: str
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    running, stop_load = ctx.Event(), ctx.Event()
    load_args = {
        "token": args.token, "max_requests": args.max_requests, "timeout": args.timeout,
        "workers": args.workers, "clients": args.clients, "big_share": args.big_share,
        "answers": args.answers,
    }  # fmt: skip
    loader = ctx.Process(target=load_process, args=(base, load_args, results, (running, stop_load)))
    loader.start()
    if not running.wait(args.timeout):
        stop_load.set()
        raise RuntimeError("the HTTP load never got an answer")
    time.sleep(args.warmup)  # the load reaches its steady state first
    stop = threading.Event()
    readyz: list[float] = []
    readyz_ingest: list[float] = []  # on the metrics listener, served by the ingest process
    probers = [
        threading.Thread(target=probe_readyz, args=(base, args.token, stop, readyz)),
        threading.Thread(target=probe_readyz, args=(probe_base, None, stop, readyz_ingest)),
    ]
    for prober in probers:
        prober.start()
    before = cpu_snapshot(pid)
    try:
        loaded = asyncio.run(
            drive(port, replay_payloads("busy", args.vehicles, args.batches), 1, args.timeout)
        )
    finally:
        cpu = cpu_spent(before, cpu_snapshot(pid))
        stop.set()
        stop_load.set()
        for prober in probers:
            prober.join(60)
    answers, loader_cpu_s = results.get(timeout=args.timeout + 120)
    loader.join(60)
    ok = [d for s, d, _ in answers if s == 200]
    return {
        "loaded": loaded,
        "readyz_ms_p50": _ms(readyz, 50),
        "readyz_ms_p99": _ms(readyz, 99),
        "readyz_ms_max": round(max(readyz, default=float("nan")) * 1000, 1),
        "readyz_probes": len(readyz),
        "readyz_metrics_listener_ms_p50": _ms(readyz_ingest, 50),
        "readyz_metrics_listener_ms_p99": _ms(readyz_ingest, 99),
        "readyz_metrics_listener_ms_max": round(max(readyz_ingest, default=float("nan")) * 1000, 1),
        "api_answers": dict(Counter(str(s) for s, _, _ in answers)),
        "api_200_ms_p50": _ms(ok, 50),
        "api_200_ms_p99": _ms(ok, 99),
        "api_big_200": sum(1 for s, _, big in answers if s == 200 and big),
        "cpu_load": {**cpu, "loader_cpu_s_whole_load": round(loader_cpu_s, 2)},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from harness.collector import CollectorProcess, write_config
    from harness.mosquitto import MosquittoHarness, free_port

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-api-")))
        broker = stack.enter_context(MosquittoHarness(tmp))
        if args.store == "sqlite":
            url = f"sqlite:///{tmp}/bench.sqlite3"
        else:
            from harness.postgres import PgHarness

            url = stack.enter_context(PgHarness()).create_database("bench")
        http_port, metrics_port = free_port(), free_port()
        cfg = write_config(
            tmp / "collector.toml", mqtt_port=broker.port, http_port=http_port, store_url=url,
            http_extra=(UNBOUNDED if args.unbounded else "")
            + ("" if args.collector_src else f"\nnice = {args.nice}")
            + f'\nmetrics_listen = "127.0.0.1:{metrics_port}"',
            # A checkout from before [http] processes: its API is in its ingest process.
            api_processes=None if args.collector_src else args.api_processes,
        )  # fmt: skip
        collector = CollectorProcess(cfg, http_port, tmp / "collector.log", token=args.token)
        if args.collector_src is not None:  # another checkout's collector, for a before/after
            os.environ["PYTHONPATH"] = str(args.collector_src)
        collector.start(timeout_s=args.timeout)
        stack.callback(collector.kill)
        args.token = collector.token()  # --token, else an admin token minted for the run
        base = collector.base_url
        started = time.monotonic()
        pre = asyncio.run(drive(broker.port, preload_payloads(args.events), 8, args.timeout))
        preload_s = time.monotonic() - started
        idle_payloads = replay_payloads("idle", args.vehicles, args.batches)
        pid = collector.proc.pid if collector.proc is not None else os.getpid()
        before = cpu_snapshot(pid)
        idle = asyncio.run(drive(broker.port, idle_payloads, 1, args.timeout))
        cpu_idle = cpu_spent(before, cpu_snapshot(pid))
        loaded = _loaded_phase(broker.port, base, args, pid, f"http://127.0.0.1:{metrics_port}")
        busy: Run = loaded.pop("loaded")
    idle_p99 = _pct(idle.latencies, 99)
    return {
        "store": args.store,
        "bounded": not args.unbounded,
        "api_processes": args.api_processes,
        "nice": args.nice,
        "events_loaded": sum(pre.acked.values()) * EVENTS_PER_BATCH,
        "preload_s": round(preload_s, 1),
        "workers": args.workers,
        "clients": args.clients,
        "ack_ms_idle_p50": _ms(idle.latencies, 50),
        "ack_ms_idle_p99": _ms(idle.latencies, 99),
        "ack_ms_load_p50": _ms(busy.latencies, 50),
        "ack_ms_load_p99": _ms(busy.latencies, 99),
        "ack_p99_ratio": round(_pct(busy.latencies, 99) / idle_p99, 2) if idle_p99 else None,
        "acked_idle": len(idle.latencies),
        "acked_load": len(busy.latencies),
        "cpu_idle": cpu_idle,
        **loaded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--store", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--events", type=int, default=86_000, help="events loaded first")
    parser.add_argument("--workers", type=int, default=300, help="concurrent HTTP workers")
    parser.add_argument("--clients", type=int, default=50, help="loopback source addresses")
    parser.add_argument("--big-share", type=float, default=0.3, help="share with limit=10000")
    parser.add_argument("--answers", type=int, default=3, help="200s each worker wants")
    parser.add_argument("--max-requests", type=int, default=200, help="per worker, 429s too")
    parser.add_argument("--vehicles", type=int, default=10, help="replaying vehicles")
    parser.add_argument("--batches", type=int, default=20, help="per replaying vehicle")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load first")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per phase")
    parser.add_argument("--unbounded", action="store_true", help="lift the HTTP limits")
    parser.add_argument("--api-processes", type=int, default=1, help="[http] processes")
    parser.add_argument("--nice", type=int, default=10, help="[http] nice")
    parser.add_argument("--token", default=os.environ.get("COLLECTOR_TOKEN"))
    parser.add_argument(
        "--collector-src", type=Path, help="run the collector from this checkout (before/after)"
    )
    args = parser.parse_args()
    if not 1 <= args.clients <= 250:
        parser.error("--clients: 1 to 250 (127.0.0.2 to 127.0.0.251)")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
