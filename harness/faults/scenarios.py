"""Fault scenarios, each at two sizes: ``SUITE`` (tests/integration/faults/, seconds each) and
``BENCH`` (bench/faults.py, the full faults: a 10-minute partition, a collector stopped
for 60 s, PostgreSQL down for 30 s, ...).

Every scenario starts the real programs, causes its fault while the taxis replay their
recordings, heals it, waits until every replay is acknowledged end to end, and returns an
:class:`Outcome`: the ledger's comparison of the store with what the taxis produced, and
the figures (time to drain after the fault ended, duplicate deliveries the store saw).
The caller asserts; the bench prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cloud_collector.alerts import TWO_EPOCHS
from edge_agent.batching import BatchPolicy
from harness.faults.harness import (
    Collector,
    Taxi,
    expected,
    finish_all,
    fleet,
    stoppable_pg,
)
from harness.faults.ledger import EVENT, Report, span
from harness.faults.proxy import REFUSE, LinkProxy
from harness.mosquitto import MosquittoHarness


@dataclass(frozen=True)
class Size:
    name: str
    vehicles: int
    recording_s: float  # seconds of the fixture drive each taxi replays
    speed: float  # replay pace (0 = as fast as possible)
    partition_s: float
    stall_s: float
    sigstop_s: float
    pg_stop_s: float
    kills: int
    broker_restarts: int
    backlog_s: float  # seconds of drive in the backlog sent over the 2 kB/s link
    # Where in the drive the taxis start: the suite's short stretch from 17 s holds lane
    # departures and a headway warning (the drive's first 17 s have no event).
    start_s: float = 0.0
    rate_bytes_per_s: int = 2048


SUITE = Size(
    "suite", vehicles=2, recording_s=16, speed=4, partition_s=1, stall_s=2, sigstop_s=3,
    pg_stop_s=3, kills=22, broker_restarts=3, backlog_s=16, start_s=17,
)  # fmt: skip
BENCH = Size(
    "bench", vehicles=5, recording_s=106, speed=1, partition_s=600, stall_s=60, sigstop_s=60,
    pg_stop_s=30, kills=22, broker_restarts=5, backlog_s=1800,
)  # fmt: skip


TWIN = "taxi-twin"  # the one vehicle id of two agents


@dataclass
class Outcome:
    scenario: str
    size: str
    report: Report
    drain_s: float  # from the end of the fault until every replay was acknowledged
    wall_s: float
    figures: dict[str, object] = field(default_factory=dict)

    def line(self) -> str:
        extra = "".join(f", {k} {v}" for k, v in self.figures.items())
        return (
            f"{self.scenario} [{self.size}]: {self.report.line()}; drain {self.drain_s:.1f} s, "
            f"total {self.wall_s:.1f} s{extra}"
        )

    def json(self) -> str:
        r = self.report
        return json.dumps(
            {
                "scenario": self.scenario, "size": self.size, "produced": r.produced,
                "stored": r.stored, "lost": r.lost, "doubled": r.doubled,
                "reordered": r.reordered, "unexpected": r.unexpected, "altered": r.altered,
                "health_stored": r.health_stored, "health_doubled": r.health_doubled,
                "drain_s": round(self.drain_s, 1), "wall_s": round(self.wall_s, 1),
                **self.figures,
            }
        )  # fmt: skip


def _duplicates(c: Collector) -> int:
    """Duplicate batch deliveries the collector counted (all vehicles)."""
    try:
        vehicles = c.process.get("/v1/vehicles").json()["vehicles"]
    except (httpx.HTTPError, KeyError, ValueError):
        return -1
    return sum(int(v.get("duplicates", 0)) for v in vehicles)


def _replay_timeout(size: Size, fault_s: float) -> float:
    speed = size.speed or 50.0
    return size.recording_s / speed + fault_s + 120


@dataclass
class Replaying:
    """Taxis replaying against a broker port, their processes and the replay timeout."""

    taxis: list[Taxi]
    procs: list[subprocess.Popen[str]]
    timeout_s: float

    def finish(self) -> float:
        """Wait for every replay (bounded); seconds it took."""
        return finish_all(self.procs, self.timeout_s + 30)


@contextlib.contextmanager
def _replaying(
    workdir: Path,
    port: int,
    size: Size,
    fault_s: float,
    *,
    vehicles: int | None = None,
    recording_s: float | None = None,
    speed: float | None = None,
) -> Iterator[Replaying]:
    """``size``'s fleet (unless told otherwise) replaying against ``port``; every taxi is
    killed when the block ends."""
    taxis = fleet(
        workdir, port, vehicles or size.vehicles,
        recording_s=recording_s or size.recording_s, start_s=size.start_s,
    )  # fmt: skip
    timeout = _replay_timeout(size, fault_s)
    pace = size.speed if speed is None else speed
    procs = [t.replay(speed=pace, timeout_s=timeout) for t in taxis]
    try:
        yield Replaying(taxis, procs, timeout)
    finally:
        for t in taxis:
            t.kill()


def _with_link(
    workdir: Path,
    size: Size,
    scenario: str,
    fault: Callable[[LinkProxy, list[Taxi]], float],
    *,
    taxis_n: int | None = None,
    recording_s: float | None = None,
    speed: float | None = None,
    fault_s: float = 0.0,
) -> Outcome:
    """Broker, collector, and taxis that reach the broker through the impairment proxy;
    ``fault(link, taxis)`` runs while they replay and returns when the fault ends (the
    monotonic time it ended)."""
    t0 = time.monotonic()
    with (
        MosquittoHarness(workdir, persistence=True) as broker,
        LinkProxy(broker.port) as link,
        Collector(workdir, broker.port) as collector,
        _replaying(
            workdir,
            link.port,
            size,
            fault_s,
            vehicles=taxis_n,
            recording_s=recording_s,
            speed=speed,
        ) as run,
    ):
        healed = fault(link, run.taxis)
        run.finish()
        drain = time.monotonic() - healed
        report = collector.compare(expected(run.taxis))
        figures: dict[str, object] = {
            "duplicate_deliveries": _duplicates(collector),
            "link_bytes_up": link.counters.bytes_up,
            "link_drops": link.counters.dropped,
        }
    return Outcome(scenario, size.name, report, drain, time.monotonic() - t0, figures)


def partition(workdir: Path, size: Size, mode: str = REFUSE) -> Outcome:
    """The link partitioned (``refuse``: connections reset and refused; ``blackhole``:
    bytes vanish, connections look open) for ``partition_s``, mid-replay."""

    def fault(link: LinkProxy, _taxis: list[Taxi]) -> float:
        time.sleep(2.5)  # the taxis are connected and publishing
        link.partition(mode)
        time.sleep(size.partition_s)
        link.partition(None)
        return time.monotonic()

    return _with_link(workdir, size, f"partition_{mode}", fault, fault_s=size.partition_s)


def stall(workdir: Path, size: Size) -> Outcome:
    """Nothing moves for ``stall_s`` while every socket stays open."""

    def fault(link: LinkProxy, _taxis: list[Taxi]) -> float:
        time.sleep(2.5)  # the taxis are connected and publishing
        link.stall(True)
        time.sleep(size.stall_s)
        link.stall(False)
        return time.monotonic()

    return _with_link(workdir, size, "stall", fault, fault_s=size.stall_s)


def bad_link(workdir: Path, size: Size) -> Outcome:
    """150 ms latency, 100 ms jitter and a connection drop every 2 s on average, for the
    whole replay; the link turns good once the taxis have read their recordings."""

    def fault(link: LinkProxy, _taxis: list[Taxi]) -> float:
        window_s = size.recording_s / (size.speed or 50.0) + 1.0
        link.set(latency_s=0.15, jitter_s=0.1, drop_every_s=2.0)
        time.sleep(window_s / 2)
        # Random drops may draw no drop at all in a short window: one is certain.
        link.drop()
        time.sleep(window_s / 2)
        link.set(latency_s=0.0, jitter_s=0.0, drop_every_s=0.0)
        return time.monotonic()

    return _with_link(workdir, size, "latency_jitter_drops", fault)


def slow_link_backlog(workdir: Path, size: Size) -> Outcome:
    """A backlog of ``backlog_s`` seconds of drive built while the link is down, then
    drained over a link capped at ``rate_bytes_per_s`` (2 kB/s) with 300 ms latency."""

    backlog: dict[str, object] = {}

    def fault(link: LinkProxy, taxis: list[Taxi]) -> float:
        link.partition(REFUSE)
        # The taxi reads its recording into its outbox meanwhile.
        backlog["backlog_batches"] = taxis[0].wait_backlog(60 + size.backlog_s)
        link.set(rate_bytes_per_s=size.rate_bytes_per_s, latency_s=0.3)
        link.partition(None)
        return time.monotonic()

    out = _with_link(
        workdir, size, "bandwidth_2kBps_backlog", fault, taxis_n=1,
        recording_s=size.backlog_s, speed=0, fault_s=size.backlog_s,
    )  # fmt: skip
    out.figures["rate_bytes_per_s"] = size.rate_bytes_per_s
    out.figures.update(backlog)
    return out


def broker_restart(workdir: Path, size: Size, *, persistence: bool) -> Outcome:
    """The broker SIGKILLed and restarted ``broker_restarts`` times mid-replay, with or
    without its persistence file (without: everything queued inside it is gone)."""
    t0 = time.monotonic()
    name = f"broker_restart_{'persistent' if persistence else 'volatile'}"
    with (
        MosquittoHarness(workdir, persistence=persistence) as broker,
        Collector(workdir, broker.port) as collector,
        _replaying(workdir, broker.port, size, 30) as run,
    ):
        every = size.recording_s / (size.speed or 50.0) / (size.broker_restarts + 1)
        for _ in range(size.broker_restarts):
            time.sleep(max(every, 1.5))
            broker.restart()
        drain = run.finish()
        report = collector.compare(expected(run.taxis))
        figures: dict[str, object] = {
            "restarts": size.broker_restarts,
            "duplicate_deliveries": _duplicates(collector),
        }
    return Outcome(name, size.name, report, drain, time.monotonic() - t0, figures)


def collector_sigstop(workdir: Path, size: Size) -> Outcome:
    """The collector frozen (SIGSTOP) for ``sigstop_s`` mid-replay, then SIGCONT: the
    broker queues for its session, the taxis re-send, nothing may be stored twice."""
    t0 = time.monotonic()
    with (
        MosquittoHarness(workdir, persistence=True) as broker,
        Collector(workdir, broker.port) as collector,
        _replaying(workdir, broker.port, size, size.sigstop_s) as run,
    ):
        time.sleep(1.5)
        collector.pause()
        time.sleep(size.sigstop_s)
        collector.resume()
        drain = run.finish()
        report = collector.compare(expected(run.taxis))
        figures: dict[str, object] = {
            "stopped_s": size.sigstop_s,
            "duplicate_deliveries": _duplicates(collector),
        }
    return Outcome("collector_sigstop", size.name, report, drain, time.monotonic() - t0, figures)


def _restarts_while(collector: Collector, seconds: float) -> int:
    """For ``seconds``: each time the collector exits (the database gone), it is taken as
    restarted, as systemd would; how many times."""
    restarts = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        time.sleep(0.2)
        if collector.process.proc is not None and collector.process.proc.poll() is not None:
            restarts += 1
            collector.process.proc = None
    return restarts


def postgres_stopped(workdir: Path, size: Size) -> Outcome:
    """The collector on PostgreSQL; the server shut down for ``pg_stop_s`` mid-replay and
    started again on the same data. A collector that exits meanwhile is restarted, as
    systemd would (counted)."""
    t0 = time.monotonic()
    with (
        stoppable_pg() as pg,
        MosquittoHarness(workdir, persistence=True) as broker,
    ):
        url = pg.create_database("faults")
        with (
            Collector(workdir, broker.port, url) as collector,
            _replaying(workdir, broker.port, size, size.pg_stop_s) as run,
        ):
            time.sleep(1.5)
            pg.halt()
            restarts = _restarts_while(collector, size.pg_stop_s)
            pg.resume()
            healed = time.monotonic()
            if collector.process.proc is None:
                collector.process.start()
            run.finish()
            drain = time.monotonic() - healed
            report = collector.compare(expected(run.taxis))
            figures: dict[str, object] = {
                "stopped_s": size.pg_stop_s,
                "collector_restarts": restarts,
                "duplicate_deliveries": _duplicates(collector),
            }
    return Outcome("postgres_stopped", size.name, report, drain, time.monotonic() - t0, figures)


# ---------------------------------------------------------------- on the taxi


def agent_killed(workdir: Path, size: Size, seed: int = 20260302) -> Outcome:
    """Each taxi's replay SIGKILLed at random moments ``kills`` times (mid-write: the
    outbox commits about once a second), resumed each time, then run to the end."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    with (
        MosquittoHarness(workdir, persistence=True) as broker,
        Collector(workdir, broker.port) as collector,
    ):
        taxis = fleet(
            workdir, broker.port, size.vehicles, recording_s=size.recording_s, start_s=size.start_s
        )
        kills = 0
        try:
            for _ in range(size.kills):
                procs = [t.replay(speed=size.speed / 2 or 2, timeout_s=60) for t in taxis]
                time.sleep(rng.uniform(0.3, 1.5))
                if any(p.poll() is not None for p in procs):
                    break
                for t in taxis:
                    t.kill()
                kills += 1
            drain = finish_all([t.replay(speed=0, timeout_s=60) for t in taxis], 120)
            report = collector.compare(expected(taxis))
        finally:
            for t in taxis:
                t.kill()
    figures: dict[str, object] = {"kills": kills}
    return Outcome("agent_killed", size.name, report, drain, time.monotonic() - t0, figures)


def two_agents_one_vehicle(workdir: Path, size: Size) -> Outcome:
    """Two agents (two outboxes, two epochs) run as one vehicle id at the same time, each
    replaying its own stretch of the drive: both must be stored, and the collector must
    raise its ``two_epochs`` alert."""
    t0 = time.monotonic()
    # Two stretches of the drive with urgent events a few seconds apart (ldw at 19 and
    # 25 s; fcw, harsh braking at 65 and 71 s): both agents send during the whole run.
    half = min(max(size.recording_s / 2, 10.0), 40.0)
    starts = (17.0, 64.0)
    with (
        MosquittoHarness(workdir, persistence=True) as broker,
        Collector(workdir, broker.port) as collector,
    ):
        # No GNSS track: the second half would start with the first half's fixes.
        first, second = (
            fleet(d, broker.port, 1, recording_s=half, start_s=start, vehicle=TWIN, gnss=False)
            for d, start in zip((workdir / "a", workdir / "b"), starts, strict=True)
        )
        taxis = first + second
        # At the recorded pace: both must be sending at the same time, over more than one
        # bulk batch period (10 s), as two agents on one taxi would.
        timeout = half + 120
        procs = [t.replay(speed=1.0, timeout_s=timeout) for t in taxis]
        try:
            drain = finish_all(procs, timeout + 30)
            whole = collector.compare(expected(taxis))
            # Each agent's records in order within its own span: the two interleave.
            parts = [collector.compare(want, span(want)) for want in map(expected, (first, second))]
            report = dataclasses.replace(
                whole, reordered=sum(p.reordered for p in parts), health_reordered=0
            )
            alerts = collector.process.get("/v1/alerts", vehicle=TWIN).json()
            kinds = sorted({a["kind"] for a in alerts})
        finally:
            for t in taxis:
                t.kill()
    figures: dict[str, object] = {
        "alerts": ",".join(kinds) or "-",
        "two_epochs": TWO_EPOCHS in kinds,
    }
    return Outcome(
        "two_agents_one_vehicle", size.name, report, drain, time.monotonic() - t0, figures
    )


FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


def faketime_env(offset_file: Path) -> dict[str, str]:
    """libfaketime reading its offset from a file at every call, so a test can step the
    wall clock of a running process; the monotonic clock is left alone, as a real step
    of the wall clock leaves it."""
    return {
        "LD_PRELOAD": str(FAKETIME_LIB),
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def clock_jump(workdir: Path, size: Size, *, ahead: str = "+1d") -> Outcome:
    """The gateway boots with its wall clock a day ahead (``ahead``, libfaketime) and
    publishes; the broker loses what it held (restart without persistence); the agent
    is restarted and the clock stepped back to the true time, as NTP/GNSS would. Every
    batch must still be re-sent and arrive."""
    t0 = time.monotonic()
    offset = workdir / "faketime.rc"
    offset.write_text(ahead + "\n")
    with (
        MosquittoHarness(workdir, persistence=False) as broker,
        LinkProxy(broker.port) as link,
        Collector(workdir, broker.port) as collector,
    ):
        taxis = fleet(workdir, link.port, 1, recording_s=size.recording_s, start_s=size.start_s)
        env = faketime_env(offset)
        timeout = _replay_timeout(size, 30)
        collector.pause()  # batches published now stay inside the broker ...
        procs = [t.replay(speed=size.speed, timeout_s=timeout, env=env) for t in taxis]
        try:
            time.sleep(min(size.recording_s / (size.speed or 50.0), 30.0) + 2.0)
            broker.restart()  # ... and are gone: only a re-send brings them back
            collector.resume()
            for t in taxis:  # the gateway restarts the agent (a reboot, a crash) ...
                t.kill()
            offset.write_text("+0\n")  # ... and NTP corrects the clock: a day back
            healed = time.monotonic()
            procs = [t.replay(speed=size.speed, timeout_s=timeout, env=env) for t in taxis]
            finish_all(procs, timeout + 30)
            drain = time.monotonic() - healed
            report = collector.compare(expected(taxis))
        finally:
            for t in taxis:
                t.kill()
    return Outcome("clock_jump", size.name, report, drain, time.monotonic() - t0, {"ahead": ahead})


def _mount_tmpfs(path: Path, size_bytes: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)],
        capture_output=True, check=False, timeout=10,
    )  # fmt: skip
    return done.returncode == 0


def tmpfs_available() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


def _fill_disk(path: Path, *, leave_bytes: int) -> None:
    """Another writer takes the disk until only ``leave_bytes`` are free."""
    with path.open("wb") as f:
        while (free := shutil.disk_usage(path.parent).free) > leave_bytes:
            f.write(b"\0" * min(free - leave_bytes, 1 << 20))
            f.flush()


def _wait_for(predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.05)


def small_disk(
    workdir: Path, size: Size, *, disk_bytes: int = 8 << 20, free_bytes: int = 64 << 10
) -> Outcome:
    """The outbox on a tmpfs of a few MB, filled by another file up to ``free_bytes``
    while the link is down and the taxi records; then the file goes and the link comes
    back. The agent must keep running on the full disk, lose no event (bulk records may
    be evicted, and are then counted in health), and deliver everything else."""
    t0 = time.monotonic()
    mount = workdir / "disk"
    if not _mount_tmpfs(mount, disk_bytes):
        raise RuntimeError("cannot mount a tmpfs here (needs root)")
    try:
        with (
            MosquittoHarness(workdir, persistence=True) as broker,
            LinkProxy(broker.port) as link,
            Collector(workdir, broker.port) as collector,
        ):
            taxis = fleet(
                workdir, link.port, 1, recording_s=size.recording_s, start_s=size.start_s,
                outbox_dir=mount,
            )  # fmt: skip
            link.partition(REFUSE)
            procs = [t.replay(speed=size.speed, timeout_s=_replay_timeout(size, 10))
                     for t in taxis]  # fmt: skip
            try:
                # The disk fills while the agent runs (an agent started on a full disk
                # cannot create its outbox, and exits for systemd to retry).
                _wait_for(lambda: any(mount.glob("*.sqlite3-wal")), 20.0)
                time.sleep(1.0)  # its open (checks, a new epoch) takes milliseconds
                _fill_disk(mount / "filler", leave_bytes=free_bytes)
                time.sleep(size.recording_s / (size.speed or 50.0) + 2.0)
                alive = all(p.poll() is None for p in procs)
                (mount / "filler").unlink()  # room again (logs rotated, say) ...
                link.partition(None)  # ... and the link back
                drain = finish_all(procs, _replay_timeout(size, 30))
                report = collector.compare(expected(taxis))
                events = _events_report(collector, taxis)
            finally:
                for t in taxis:
                    t.kill()
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False, timeout=10)
    figures: dict[str, object] = {
        "disk_bytes": disk_bytes,
        "free_bytes": free_bytes,
        "alive_while_full": alive,
        "urgent_events_lost": events.lost,
        "evicted_records": report.evicted,
    }
    return Outcome("small_disk_outbox", size.name, report, drain, time.monotonic() - t0, figures)


def _events_report(collector: Collector, taxis: list[Taxi]) -> Report:
    """The ledger restricted to urgent events, the records eviction for space never takes
    (other events travel with the bulk samples and may be evicted with them, declared)."""
    want = expected(taxis)
    urgent = BatchPolicy().is_urgent
    want.records = [r for r in want.records if r[1] == EVENT and urgent(r[2])]
    return collector.compare(want)
