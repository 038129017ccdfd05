"""The parts every fault scenario is built from: taxis (real ``edge-agent replay``
processes, each with its own outbox), the real collector process, a PostgreSQL server
that can be stopped and started on the same data, and the ledger's expectations.

Nothing here is a fake: the agents, mosquitto, the collector and PostgreSQL are the real
programs, started and killed as processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tests.faults.ledger import (
    Produced,
    Report,
    compare,
    produced,
    read_collector_postgres,
    read_collector_sqlite,
    read_consumer,
)
from tests.mosquitto_harness import free_port
from tests.pg_harness import PgHarness
from tests.support.agent_config import replay_config_toml
from tests.test_collector_support import CollectorProcess, write_config
from tests.test_daemon import FIXTURE, MQTT_TUNING, ROOT, make_recording

NMEA = ROOT / "hw_fixtures" / "drives" / "drive.nmea"
FLEET = "test-fleet"
DRIVE_S = 106.0  # length of the fixture drive


@dataclass
class Taxi:
    vehicle: str
    dir: Path
    config: Path
    recording: Path
    outbox: Path
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "edge_agent.cli", *args, "--config", str(self.config)]

    def replay(
        self, *, speed: float = 0, timeout_s: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """``edge-agent replay`` in the background (resumes from its outbox)."""
        cmd = self.cmd("replay", str(self.recording), "--speed", str(speed))
        cmd += ["--timeout", str(timeout_s)]
        proc = subprocess.Popen(
            cmd,
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=None if env is None else {**os.environ, **env},
        )
        self.procs.append(proc)
        return proc

    def status(self) -> dict[str, object]:
        """``edge-agent status``: the outbox as the agent left it (readable while it runs)."""
        done = subprocess.run(
            self.cmd("status"), capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stderr[-2000:]
        report: dict[str, object] = json.loads(done.stdout)
        return report

    def wait_backlog(self, timeout_s: float) -> int:
        """Until the outbox stops growing (the replay has read its recording): the number
        of batches pending."""
        deadline = time.monotonic() + timeout_s
        last = -1
        while time.monotonic() < deadline:
            if not self.outbox.exists():  # the agent has not opened it yet
                time.sleep(0.2)
                continue
            pending = self.status().get("pending_batches")
            assert isinstance(pending, int)
            if pending == last and pending > 0:
                return pending
            last = pending
            time.sleep(1.0)
        raise AssertionError(f"{self.vehicle}: the outbox still grows after {timeout_s} s")

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if proc.stderr is not None:
                proc.stderr.close()
        self.procs.clear()


def finish(proc: subprocess.Popen[str], timeout_s: float = 180) -> None:
    """Wait for a replay; it must exit 0 (everything acknowledged end to end)."""
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"replay still running after {timeout_s} s: {err[-3000:]}") from None
    assert proc.returncode == 0, err[-3000:]


def finish_all(procs: Sequence[subprocess.Popen[str]], timeout_s: float = 180) -> float:
    """Wait for every replay; seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    for proc in procs:
        finish(proc, max(1.0, deadline - time.monotonic()))
    return time.monotonic() - t0


def fleet(
    workdir: Path,
    port: int,
    n: int,
    *,
    recording_s: float,
    start_s: float = 0.0,
    gnss: bool = True,
    resend_ms: int = 3000,
    mqtt_extra: str = "",
    vehicle: str | None = None,
    outbox_dir: Path | None = None,
) -> list[Taxi]:
    """``n`` taxis, each with its own directory, config, outbox and copy of the drive's
    first ``recording_s`` seconds (from ``start_s``); vehicle ids ``taxi-0``... unless
    ``vehicle`` names one id for all of them."""
    recording = _slice(recording_s, start_s)
    taxis = []
    for i in range(n):
        vid = vehicle or f"taxi-{i}"
        d = workdir / f"agent-{i}"
        d.mkdir(parents=True, exist_ok=True)
        rec = d / "drive.log"
        shutil.copyfile(recording, rec)
        outbox = (outbox_dir or d) / f"outbox-{i}.sqlite3"
        config = d / "agent.toml"
        config.write_text(
            replay_config_toml(
                vehicle=vid,
                fleet=FLEET,
                recording="drive.log",
                outbox=outbox,
                mqtt_port=port,
                mqtt_extra=MQTT_TUNING.format(resend_ms=resend_ms, extra=mqtt_extra),
                nmea=NMEA if gnss else None,
            )
        )
        taxis.append(Taxi(vid, d, config, rec, outbox))
    return taxis


_SLICES = Path(os.environ.get("TMPDIR", "/tmp")) / f"fault-slices-{os.getpid()}"


@cache
def _slice(seconds: float, start_s: float) -> Path:
    """The drive from ``start_s`` for ``seconds``, written once per process. Past the
    drive's end it starts over, its times shifted on, as one long drive (a backlog of
    hours from the 106 s fixture)."""
    _SLICES.mkdir(parents=True, exist_ok=True)
    path = _SLICES / f"drive-{start_s:g}-{seconds:g}.log"
    if start_s == 0 and seconds <= DRIVE_S:
        return make_recording(path, seconds)
    frames: list[tuple[float, str]] = []
    with FIXTURE.open() as lines:
        for line in lines:
            stamp_text, rest = line.split(maxsplit=1)
            frames.append((float(stamp_text[1:-1]), rest))
    first, last = frames[0][0], frames[-1][0]
    period = last - first + 0.01
    with path.open("w") as out:
        lap = 0
        while True:
            for stamp, rest in frames:
                t = stamp - first + lap * period
                if t < start_s:
                    continue
                if t > start_s + seconds:
                    return path
                out.write(f"({first + t:.6f}) {rest}")
            lap += 1


def expected(taxis: Sequence[Taxi]) -> Produced:
    """The ledger's side: what every taxi's pipeline produces from its recording. Taxis
    with the same recording and settings differ only in vehicle id: one run serves all."""
    out = Produced()
    runs: dict[str, Produced] = {}
    for taxi in taxis:
        settings = [
            line
            for line in taxi.config.read_text().splitlines()
            if not line.startswith(("id = ", "path = "))
        ]
        digest = hashlib.sha256(taxi.recording.read_bytes())
        digest.update("\n".join(settings).encode())
        key = digest.hexdigest()
        if key not in runs:
            runs[key] = produced(taxi.config, taxi.recording, vehicle="-")
        base = runs[key]
        out.add(
            Produced(
                [(taxi.vehicle, *r[1:]) for r in base.records],
                {(taxi.vehicle, *k[1:]): v for k, v in base.values.items()},
            )
        )
    return out


# ---------------------------------------------------------------- the collector


class Collector:
    """``cloud-collector run`` as a process (tests/test_collector_support.py), on SQLite
    or PostgreSQL, with pause/resume and the ledger's view of its store."""

    def __init__(self, workdir: Path, mqtt_port: int, store_url: str | None = None) -> None:
        self.http_port = free_port()
        self.sqlite = None if store_url else workdir / "collector.sqlite3"
        self.url = store_url or f"sqlite:///{self.sqlite}"
        cfg = write_config(
            workdir / "collector.toml",
            mqtt_port=mqtt_port,
            http_port=self.http_port,
            store_url=self.url,
        )
        self.process = CollectorProcess(cfg, self.http_port, workdir / "collector.log")

    def __enter__(self) -> Collector:
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.proc is not None and self.process.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.kill(self.process.proc.pid, signal.SIGCONT)
        self.process.kill()

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def restart_if_dead(self) -> bool:
        """What systemd's Restart= does; True if it had exited."""
        proc = self.process.proc
        if proc is not None and proc.poll() is not None:
            self.process.start()
            return True
        return False

    def compare(self, want: Produced, window: tuple[int, int] | None = None) -> Report:
        if self.sqlite is not None:
            return compare(want, read_collector_sqlite(self.sqlite), window)
        return compare(want, read_collector_postgres(self.url), window)

    def log_text(self) -> str:
        try:
            return self.process.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def consumer_report(db: Path, want: Produced) -> Report:
    return compare(want, read_consumer(db))


# ---------------------------------------------------------------- PostgreSQL


class StoppablePg(PgHarness):
    """A PostgreSQL server that can be shut down and started again on the same data."""

    def halt(self) -> None:
        """Fast shutdown (SIGINT): sessions are aborted, the data directory stays."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)

    def resume(self) -> None:
        args = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        args += ["-k", str(self.data_dir.parent)]
        for key, value in self._settings.items():
            args += ["-c", f"{key}={value}"]
        user, group = self._account if self._account else (None, None)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                args, user=user, group=group, extra_groups=[] if user else None,
                stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir.parent,
            )  # fmt: skip
        self._wait_ready()


@contextlib.contextmanager
def stoppable_pg() -> Iterator[StoppablePg]:
    with StoppablePg() as pg:
        yield pg
