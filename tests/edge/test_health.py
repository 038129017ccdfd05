"""Health: the pure tracker, [gnss] nmea config, `status --human`, and a replay whose
batches carry GNSS fixes from a track file and health snapshots."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from edge_agent.config import parse_config
from edge_agent.errors import ConfigError
from edge_agent.health import DailyTotal, HealthTracker, bus_frames_key
from edge_agent.outbox import Outbox, Records
from edge_agent.outbox_status import format_human, headline, human_bytes, human_duration_ms
from harness.agent import ROOT, agent_cmd, setup
from harness.mosquitto import free_port
from protocol import decode_batch
from protocol.contracts import health_problems
from protocol.records import GnssFix, Health

NMEA = ROOT / "hw_fixtures" / "drives" / "drive.nmea"

# --- HealthTracker: pure ------------------------------------------------------------------


def test_first_poll_then_interval() -> None:
    t = HealthTracker(60.0)
    first = t.poll(0.0, {}, {"uplink_connected": False})
    assert first is not None
    assert first.reason == "start"
    assert first.elapsed_s is None
    assert t.poll(59.0, {}, {"uplink_connected": False}) is None
    due = t.poll(60.0, {}, {"uplink_connected": False})
    assert due is not None
    assert due.reason == "interval"


def test_state_change_is_due_at_once_but_not_more_than_once_per_gap() -> None:
    t = HealthTracker(60.0, min_gap_s=1.0)
    assert t.poll(0.0, {}, {"uplink_connected": False, "gnss_fix": False}) is not None
    # Changed within the gap: deferred, then reported against the last snapshot.
    assert t.poll(0.5, {}, {"uplink_connected": True, "gnss_fix": False}) is None
    due = t.poll(1.0, {}, {"uplink_connected": True, "gnss_fix": True})
    assert due is not None
    assert due.reason == "change:gnss_fix,uplink_connected"
    # A flap that is back to the snapshot's value by the next poll is no change.
    assert t.poll(1.5, {}, {"uplink_connected": False, "gnss_fix": True}) is None
    assert t.poll(2.5, {}, {"uplink_connected": True, "gnss_fix": True}) is None


def test_bus_silent_and_active_are_state_changes_with_rates() -> None:
    t = HealthTracker(60.0, buses=("can0",), silent_after_s=5.0)
    key = bus_frames_key("can0")
    start = t.poll(0.0, {key: 0}, {})
    assert start is not None
    assert start.state["bus_can0_active"] is False
    active = t.poll(2.0, {key: 1000}, {})
    assert active is not None
    assert active.reason == "change:bus_can0_active"
    assert active.rates[key] == 500.0
    assert t.poll(6.0, {key: 3000}, {}) is None  # still active
    assert t.poll(10.0, {key: 3000}, {}) is None  # 4 s without frames: not yet silent
    silent = t.poll(11.5, {key: 3000}, {})
    assert silent is not None
    assert silent.reason == "change:bus_can0_active"
    assert silent.state["bus_can0_active"] is False
    assert silent.rates[key] == pytest.approx(2000 / 9.5)


def test_forced_snapshot_and_counter_restart() -> None:
    t = HealthTracker(60.0)
    assert t.poll(0.0, {"cpu_s": 5.0}, {}) is not None
    stop = t.poll(1.0, {"cpu_s": 4.0}, {}, force="stop")
    assert stop is not None
    assert stop.reason == "stop"
    assert "cpu_s" not in stop.rates  # went down: no rate rather than a negative one


def test_daily_total_restarts_at_utc_midnight() -> None:
    d = DailyTotal()
    assert d.update(100, 500) == 500  # counted since the agent started
    assert d.update(100, 800) == 800
    assert d.update(101, 900) == 0
    assert d.update(101, 1000) == 100
    assert d.update(101, 10) == 10  # the counter restarted


# --- [gnss] config -------------------------------------------------------------------------

BASE = {
    "vehicle": {"id": "taxi-7", "fleet": "f"},
    "bus": [{"name": "camera", "interface": "replay", "channel": "drive.log"}],
}


@pytest.mark.parametrize(
    "gnss",
    [{}, {"gpsd": "127.0.0.1:2947", "nmea": "drive.nmea"}],
)
def test_gnss_needs_exactly_one_source(gnss: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"key 'gnss'.*exactly one of 'gnss.gpsd'"):
        parse_config({**BASE, "gnss": gnss}, "agent.toml")


def test_gnss_nmea_alone_is_valid_and_health_interval_is_checked() -> None:
    config = parse_config({**BASE, "gnss": {"nmea": "drive.nmea"}}, "agent.toml")
    assert config.gnss is not None
    assert config.gnss.gpsd is None
    assert config.gnss.nmea_path(Path("/etc/edge-agent")) == Path("/etc/edge-agent/drive.nmea")
    with pytest.raises(ConfigError, match=r"key 'health.interval_s'"):
        parse_config({**BASE, "health": {"interval_s": 0}}, "agent.toml")
    with pytest.raises(ConfigError, match=r"key 'health.intervl_s'.*interval_s"):
        parse_config({**BASE, "health": {"intervl_s": 5}}, "agent.toml")


# --- status --human --------------------------------------------------------------------------

NOW = 1_772_436_600_000


def _report(**values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "health_interval_s": 60.0,
        "uplink_connected": True,
        "gnss_mode": 3,
        "camera_failsafe": False,
        "camera_tamper": False,
    }
    return {
        "pending_batches": 2,
        "pending_bytes": 5_000,
        "staged_records": 3,
        "oldest_pending_age_ms": 4_000,
        "highest_acked_seq": 41,
        "next_seq": 44,
        "dropped": {},
        "health": {"time_ms": NOW - 30_000, "values": {**base, **values}},
    }


def test_headline() -> None:
    assert headline(_report(), NOW) == ["OK"]
    assert headline(_report(uplink_connected=False, gnss_mode=1), NOW) == ["OFFLINE", "NO GNSS"]
    assert headline(_report(camera_failsafe=True), NOW) == ["CAMERA FAILSAFE"]
    assert headline(_report(clock_invalid=True), NOW) == ["CLOCK WRONG"]
    assert headline(_report(clock_invalid=False), NOW) == ["OK"]
    backlog = {**_report(), "pending_batches": 500}
    assert headline(backlog, NOW) == ["BACKLOG"]
    assert headline(_report(), NOW + 10 * 60_000) == ["STALE"]
    assert headline({**_report(), "health": None}, NOW) == ["NO HEALTH SNAPSHOT"]


def test_units() -> None:
    assert human_bytes(1_234_567) == "1.2 MB"
    assert human_bytes(999) == "999 B"
    assert human_bytes(None) == "-"
    assert human_duration_ms(450) == "450 ms"
    assert human_duration_ms(42_000) == "42 s"
    assert human_duration_ms(12 * 60_000) == "12 min"


def test_human_block_is_aligned() -> None:
    text = format_human(_report(bus_camera_fps=612.4, bus_camera_active=True), NOW)
    lines = text.splitlines()
    assert lines[0].split(":", 1)[1].strip() == "OK"
    assert "30 s ago" in text
    assert "612 frames/s" in text
    assert "3D fix" in text
    colons = {line.index(":") for line in lines}
    values_at = {len(line) - len(line.split(":", 1)[1].lstrip()) for line in lines}
    assert len(values_at) == 1, text  # every value starts in the same column
    assert colons  # sanity


def _write_outbox(path: Path, health: Health | None) -> None:
    async def go() -> None:
        outbox = await Outbox.open(path, fleet_id="f", vehicle_id="taxi-7")
        try:
            if health is not None:
                await outbox.append(Records(health=(health,)), health.time_ms)
        finally:
            await outbox.close()

    asyncio.run(go())


def test_status_json_by_default_and_human_on_request(tmp_path: Path) -> None:
    s = setup(tmp_path, free_port())
    snapshot = Health(
        NOW,
        {
            "uplink_connected": False,
            "gnss_mode": 3,
            "camera_failsafe": False,
            "camera_tamper": False,
            "health_interval_s": 60.0,
            "bus_camera_fps": 600.0,
            "disk_free_bytes": 2_500_000_000,
            "rss_bytes": 52_000_000,
        },
    )
    _write_outbox(tmp_path / "outbox.sqlite3", snapshot)
    plain = subprocess.run(
        agent_cmd(s, "status"), check=True, capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert plain.stdout.lstrip().startswith("{")
    human = subprocess.run(
        agent_cmd(s, "status", "--human"),
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    first = human.stdout.splitlines()[0]
    assert first.startswith("status:")
    assert "OFFLINE" in first
    assert "STALE" not in first or "ago" in human.stdout
    assert "2.5 GB" in human.stdout
    assert "52.0 MB resident" in human.stdout


# --- replay with [gnss] nmea: fixes and health in the batches ------------------------------


def _batches(outbox: Path) -> list[tuple[str, bytes]]:
    with sqlite3.connect(outbox) as db:
        return [(str(c), bytes(p)) for c, p in db.execute("SELECT channel, payload FROM batches")]


def _wait_for_a_batch(outbox: Path, agent: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and agent.poll() is None:
        with contextlib.suppress(sqlite3.OperationalError):  # not created yet
            if outbox.exists() and _batches(outbox):
                return
        time.sleep(0.1)
    raise AssertionError("the agent wrote no batch within 60 s")


def test_replay_with_nmea_track_puts_fixes_and_health_in_batches(tmp_path: Path) -> None:
    # No broker: the replay gives up waiting for acks, and the batches stay in the outbox.
    (tmp_path / "track.nmea").write_bytes(NMEA.read_bytes())
    s = setup(tmp_path, free_port(), extra='[gnss]\nnmea = "track.nmea"\n')
    cmd = agent_cmd(s, "replay", str(s.recording), "--speed", "0", "--timeout", "1")
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "not acknowledged" in done.stderr
    fixes: list[GnssFix] = []
    health: list[Health] = []
    for _channel, payload in _batches(tmp_path / "outbox.sqlite3"):
        batch = decode_batch(payload)
        fixes.extend(batch.gnss)
        health.extend(batch.health)
    # The recording holds the first 40 s of the drive; the track has one fix a second.
    assert 35 <= len(fixes) <= 42
    assert [f.time_ms for f in fixes] == sorted(f.time_ms for f in fixes)
    assert all(f.mode == 3 for f in fixes)
    reasons = [h.values["health_reason"] for h in health]
    assert reasons[0] == "start"
    assert reasons[-1] == "replay_done"
    last = health[-1].values
    assert last["agent_mode"] == "replay"
    assert last["gnss_mode"] == 3
    assert last["uplink_connected"] is False
    assert isinstance(last["config_hash"], str)
    assert len(last["config_hash"]) == 12
    assert isinstance(last["bus_camera_frames"], int)
    assert last["bus_camera_frames"] > 0
    # Every key of every snapshot is one protocol.contracts defines, of its type.
    assert [health_problems(h.values) for h in health] == [[]] * len(health)


def test_nmea_file_missing_names_the_key(tmp_path: Path) -> None:
    s = setup(tmp_path, free_port(), extra='[gnss]\nnmea = "nope.nmea"\n')
    cmd = agent_cmd(s, "replay", str(s.recording), "--speed", "0", "--timeout", "1")
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1
    assert "key 'gnss.nmea': file not found" in done.stderr


def test_run_with_replay_buses_and_nmea_track_stores_fixes_and_health(tmp_path: Path) -> None:
    (tmp_path / "track.nmea").write_bytes(NMEA.read_bytes())
    s = setup(tmp_path, free_port(), extra='[gnss]\nnmea = "track.nmea"\n')
    started = time.monotonic()
    agent = subprocess.Popen(agent_cmd(s, "run"), cwd=ROOT, stderr=subprocess.PIPE)
    try:
        # Start-up takes long on a loaded machine: the pacing window opens once the agent
        # has written its first batch (the start snapshot).
        _wait_for_a_batch(tmp_path / "outbox.sqlite3", agent)
        time.sleep(3.0)  # the window in which fixes are paced, not a wait for a condition
        assert agent.poll() is None
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=20)
    running_s = time.monotonic() - started
    assert agent.returncode == 0, err.decode()[-3000:]
    fixes: list[GnssFix] = []
    health: list[Health] = []
    for _channel, payload in _batches(tmp_path / "outbox.sqlite3"):
        batch = decode_batch(payload)
        fixes.extend(batch.gnss)
        health.extend(batch.health)
    # Paced at the recorded rate, about one a second: not the whole track at once.
    assert 2 <= len(fixes) <= running_s + 2
    reasons = [h.values["health_reason"] for h in health]
    assert reasons[0] == "start"
    assert reasons[-1] == "stop"
    assert any(str(r).startswith("change:") and "bus_camera_active" in str(r) for r in reasons)
    last = health[-1].values
    assert last["agent_mode"] == "run"
    assert last["gnss_mode"] == 3
    fps = last["bus_camera_fps"]
    assert isinstance(fps, float)
    assert fps > 0
