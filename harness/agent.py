"""A real ``edge-agent`` replaying a recording against a real broker: its config, its
recording (a slice of the fixture drive), the command lines, and what the consumer must
hold afterwards. Used by the agent's integration tests, the fault rigs, the benchmarks and
the demo.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edge_agent.assemble import build_pipeline
from edge_agent.config import load_config
from edge_agent.sources import ReplaySource
from harness import consumer

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "hw_fixtures" / "drives" / "drive.log"
# The console script of the virtualenv running the tests (installed by scripts/setup.sh).
EDGE_AGENT = Path(sys.executable).parent / "edge-agent"
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


def replay_config_toml(
    *,
    vehicle: str,
    fleet: str,
    recording: str | Path,
    outbox: str | Path,
    mqtt_port: int,
    mqtt_extra: str = "",
    nmea: str | Path | None = None,
    extra: str = "",
) -> str:
    """The config of one taxi replaying a two-bus recording (camera on ``can0``, vehicle
    on ``can1``), as the demo, the tests and the benchmarks run it.

    ``mqtt_extra`` is TOML lines added to ``[mqtt]``; ``extra``, whole sections at the end.
    Relative paths are relative to the config file, as in any config.
    """

    def q(value: str | Path) -> str:
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string

    buses = "".join(
        f'\n[[bus]]\nname = {q(name)}\ninterface = "replay"\nchannel = {q(recording)}\n'
        f"logged_channel = {q(channel)}\n"
        for name, channel in (("camera", "can0"), ("vehicle", "can1"))
    )
    gnss = "" if nmea is None else f"\n[gnss]\nnmea = {q(nmea)}\n"
    return (
        f"[vehicle]\nid = {q(vehicle)}\nfleet = {q(fleet)}\n{buses}{gnss}"
        f"\n[outbox]\npath = {q(outbox)}\n"
        f'\n[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\n{mqtt_extra.strip()}\n{extra}'
    )
