"""The agent end to end: ``edge-agent replay|run|status`` as real processes, with a real
mosquitto and the test consumer. Helpers here are shared with tests/faults/."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_agent.assemble import build_pipeline
from edge_agent.checkpoint import Checkpoint
from edge_agent.config import load_config
from edge_agent.errors import AgentError
from edge_agent.replay import ranges
from edge_agent.sources import ReplaySource
from tests import consumer
from tests.mosquitto_harness import MosquittoHarness, free_port
from tests.support.agent_config import replay_config_toml

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "hw_fixtures" / "drives" / "drive.log"
# Seconds of the fixture drive used: long enough for fcw/ldw/braking events and many
# batches, short enough that 20+ kills fit in the time budget.
RECORDING_S = 40.0

# Short timeouts so the fault tests see reconnects and resends within seconds.
MQTT_TUNING = """
keepalive_s = 10
connect_timeout_s = 2.0
publish_timeout_s = 5.0
resend_after_ms = {resend_ms}
reconnect_min_s = 0.2
reconnect_max_s = 1.0
catchup_rate_bytes_per_s = 0
last_publish_s = 2.0
{extra}
"""


def synthetic_log(path: Path) -> None:
    """Used only when the committed fixture is missing: a few fcw/ldw edges on 0x700 and
    wheel speeds on 0x386."""
    lines = []
    t0 = 1_772_436_600.0
    for i in range(3000):
        t = t0 + i * 0.01
        kmh = max(0, 60 - i // 20)
        raw = int(kmh / 0.03125)
        wheels = raw.to_bytes(2, "little") * 4
        lines.append(f"({t:.6f}) can1 386#{wheels.hex().upper()}")
        if i % 8 == 0:
            fcw = (i // 400) % 2
            ldw = (i // 300) % 2
            byte4 = (fcw << 3) | (ldw << 1)
            lines.append(f"({t + 0.001:.6f}) can0 700#00000000{byte4:02X}000000")
    path.write_text("\n".join(lines) + "\n")


def make_recording(path: Path, seconds: float = RECORDING_S) -> Path:
    if not FIXTURE.exists():
        synthetic_log(path)
        return path
    out: list[str] = []
    start: float | None = None
    with FIXTURE.open() as lines:
        for line in lines:
            stamp = float(line.split(maxsplit=1)[0][1:-1])
            start = stamp if start is None else start
            if stamp - start > seconds:
                break
            out.append(line)
    path.write_text("".join(out))
    return path


@dataclass
class Expected:
    events: Counter[tuple[str, int]]
    samples: Counter[tuple[str, int]]
    values: dict[tuple[str, int], float | None]


def expected(config_path: Path, recording: Path) -> Expected:
    """What one uninterrupted in-process pipeline run produces."""
    config = load_config(config_path)
    route = {b.logged_channel: b.name for b in config.bus}
    pipeline = build_pipeline(config, config_path.parent, [b.name for b in config.bus])
    for frame in ReplaySource(recording).frames():
        bus = route.get(str(frame.channel))
        if bus is not None:
            pipeline.on_frame(bus, frame)
    samples: Counter[tuple[str, int]] = Counter()
    values: dict[tuple[str, int], float | None] = {}
    for series in pipeline.thinner.drain():
        for t, v in zip(series.times_ms, series.values, strict=True):
            samples[(series.name, t)] += 1
            values[(series.name, t)] = None if v is None else float(v)
    return Expected(Counter((e.type, e.time_ms) for e in pipeline.events), samples, values)


def assert_exactly_once(db: Path, want: Expected) -> None:
    got = consumer.load_results(db)
    assert got.events == want.events
    assert got.samples == want.samples
    for key, value in want.values.items():
        stored = got.values[key]
        assert (stored is None) == (value is None), key
        if stored is not None and value is not None:
            assert math.isclose(stored, value, rel_tol=1e-6, abs_tol=1e-6), key


@dataclass
class Setup:
    dir: Path
    config: Path
    recording: Path
    db: Path


def write_config(tmp: Path, port: int, *, resend_ms: int = 3000, extra: str = "") -> Path:
    path = tmp / "agent.toml"
    path.write_text(
        replay_config_toml(
            vehicle="taxi-7",
            fleet="test-fleet",
            recording="drive.log",
            outbox="outbox.sqlite3",
            mqtt_port=port,
            mqtt_extra=MQTT_TUNING.format(resend_ms=resend_ms, extra=extra),
        )
    )
    return path


def setup(tmp: Path, port: int, **kw: object) -> Setup:
    recording = make_recording(tmp / "drive.log")
    config = write_config(tmp, port, **kw)  # type: ignore[arg-type]
    return Setup(tmp, config, recording, tmp / "collector.sqlite3")


def agent_cmd(s: Setup, *args: str) -> list[str]:
    return [sys.executable, "-m", "edge_agent.cli", *args, "--config", str(s.config)]


def replay(
    s: Setup, *, speed: float = 0, timeout_s: float = 60, wait_s: float = 90
) -> subprocess.CompletedProcess[str]:
    cmd = agent_cmd(s, "replay", str(s.recording), "--speed", str(speed))
    cmd += ["--timeout", str(timeout_s)]
    return subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=wait_s, cwd=ROOT
    )


def status(s: Setup) -> dict[str, object]:
    out = subprocess.run(
        agent_cmd(s, "status"), check=False, capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    report: dict[str, object] = json.loads(out.stdout)
    return report


@pytest.mark.integration
def test_replay_delivers_everything_exactly_once(tmp_path: Path) -> None:
    with MosquittoHarness(tmp_path) as broker:
        s = setup(tmp_path, broker.port)
        proc = consumer.spawn(broker.port, s.db)
        try:
            done = replay(s)
            assert done.returncode == 0, done.stderr[-3000:]
            report = status(s)
            assert report["pending_batches"] == 0
            # A second run after completion only waits for acks: nothing is sent twice.
            again = replay(s)
            assert again.returncode == 0, again.stderr[-3000:]
        finally:
            consumer.stop(proc)
    want = expected(s.config, s.recording)
    assert want.events, "the recording should produce events"
    assert_exactly_once(s.db, want)
    assert consumer.load_results(s.db).duplicates == 0


@pytest.mark.integration
def test_run_drains_on_sigterm_and_status_reads_the_outbox(tmp_path: Path) -> None:
    with MosquittoHarness(tmp_path) as broker:
        s = setup(tmp_path, broker.port)
        proc = consumer.spawn(broker.port, s.db)
        try:
            agent = subprocess.Popen(agent_cmd(s, "run"), cwd=ROOT, stderr=subprocess.PIPE)
            time.sleep(4.0)
            assert agent.poll() is None
            assert isinstance(status(s)["epoch"], int)  # readable while the agent runs
            os.kill(agent.pid, signal.SIGTERM)
            _, err = agent.communicate(timeout=20)
            assert agent.returncode == 0, err.decode()[-3000:]
        finally:
            consumer.stop(proc)
    # Everything read before SIGTERM was flushed, force-closed and published.
    got = consumer.load_results(s.db)
    assert got.samples
    report = status(s)
    assert report["staged_records"] == 0


def test_status_without_an_outbox_is_a_clear_error(tmp_path: Path) -> None:
    s = setup(tmp_path, free_port())
    out = subprocess.run(
        agent_cmd(s, "status"), check=False, capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert out.returncode != 0
    assert "outbox" in out.stderr


def test_pending_seqs_are_reported_as_ranges() -> None:
    assert ranges([1, 2, 3, 7, 9, 10]) == "1..3, 7, 9..10"
    assert ranges([]) == ""


def test_a_damaged_checkpoint_is_a_clear_error() -> None:
    state = {"version": 1, "extractor": {"edges": {"fcw": True}}, "thinner": {}}
    blob = Checkpoint("/x/drive.log", 512, False, state).dump()
    assert Checkpoint.load(blob) == Checkpoint("/x/drive.log", 512, False, state)
    with pytest.raises(AgentError, match="unreadable replay checkpoint"):
        Checkpoint.load(b"\x80garbage")
