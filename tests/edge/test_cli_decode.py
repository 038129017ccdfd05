"""`edge-agent decode` on the fixture drive, in every recording format, and on bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVES = ROOT / "hw_fixtures" / "drives"
DRIVE_LOG = DRIVES / "drive.log"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def decode(*args: str | Path) -> subprocess.CompletedProcess[str]:
    # ASC stores wall-clock time, which python-can reads as local time.
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "decode", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TZ": "UTC"},
    )


def events_of(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    for event in events:
        assert isinstance(event["type"], str)
        assert ISO_MS.match(event["time"]), event["time"]
    return events


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.fixture(scope="module")
def log_events() -> list[dict[str, Any]]:
    return events_of(decode(DRIVE_LOG))


def test_every_scripted_event_is_found_once_near_its_time(log_events: list[dict[str, Any]]) -> None:
    expected = json.loads((DRIVES / "drive.expected.json").read_text())["events"]
    assert len(expected) >= 12
    unmatched = list(log_events)
    for want in expected:
        match = [
            e
            for e in unmatched
            if e["type"] == want["type"]
            and abs(ms(e["time"]) - ms(want["time"])) <= 400
            and all(e.get(k) == v for k, v in want.get("attrs", {}).items())
        ]
        assert len(match) == 1, f"scripted {want} found {len(match)} times"
        unmatched.remove(match[0])
    # Nothing the script did not put there (other than the warnings an FCW also raises).
    assert {e["type"] for e in unmatched} <= {"headway_warning", "pcw", "peds_in_dz"}


def test_events_carry_speed_source_and_raw_sound(log_events: list[dict[str, Any]]) -> None:
    fcw = [e for e in log_events if e["type"] == "fcw"]
    assert {e["urban"] for e in fcw} == {True, False}
    for e in fcw:
        assert e["can_id"] == "0x700"
        assert e["sound_code"] in (5, 6)
        assert len(e["raw"]) == 16
        assert e["speed_kmh"] is not None
    braking = next(e for e in log_events if e["type"] == "harsh_braking")
    assert braking["decel_g"] >= 0.3
    sign = next(e for e in log_events if e["type"] == "tsr_sign")
    assert sign["limit_kmh"] == 50
    failsafe = next(e for e in log_events if e["type"] == "camera_failsafe")
    assert failsafe["causes"] == "blur"  # from 0x738, later in the same burst


@pytest.mark.parametrize("name", ["drive.asc.gz", "drive.blf"])
def test_other_formats_give_the_same_events(name: str, log_events: list[dict[str, Any]]) -> None:
    path = DRIVES / name
    other = events_of(decode(path))
    assert [e["type"] for e in other] == [e["type"] for e in log_events]
    # ASC keeps times as text relative to a start line: float sums may land 1 ms apart.
    for a, b in zip(other, log_events, strict=True):
        assert abs(ms(a["time"]) - ms(b["time"])) <= 1


def test_channel_selects_one_bus(log_events: list[dict[str, Any]]) -> None:
    camera = events_of(decode(DRIVE_LOG, "--channel", "can0"))
    assert {e["bus"] for e in camera} == {"can0"}
    # Without the vehicle bus, hard braking is still seen through the camera's speed echo.
    braking = [e for e in camera if e["type"] == "harsh_braking"]
    assert [e["can_id"] for e in braking] == ["0x760"]
    both = [e["can_id"] for e in log_events if e["type"] == "harsh_braking"]
    assert both == ["0x386"]  # with both buses, the wheel speeds win


def test_config_maps_channels_to_named_buses() -> None:
    events = events_of(decode(DRIVE_LOG, "--config", ROOT / "examples" / "replay.toml"))
    assert {e["bus"] for e in events} == {"camera", "vehicle"}


def test_missing_and_unknown_files_fail_with_one_line(tmp_path: Path) -> None:
    for path, reason in [
        (tmp_path / "nope.log", "file not found"),
        (tmp_path / "x.mf5", "unknown recording format"),
    ]:
        if path.suffix == ".mf5":
            path.write_text("x")
        result = decode(path)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1].startswith(f"edge-agent: {path}: {reason}")
        assert result.stdout == ""


def test_truncated_log_prints_good_events_and_names_the_bad_line(tmp_path: Path) -> None:
    lines = DRIVE_LOG.read_text().splitlines()
    cut = tmp_path / "cut.log"
    cut.write_text("\n".join(lines[: len(lines) // 2]) + "\n" + lines[len(lines) // 2][:17])
    result = decode(cut)
    assert result.returncode == 1
    assert result.stdout.strip()  # events before the cut are still reported
    last = result.stderr.strip().splitlines()[-1]
    assert re.match(
        rf"edge-agent: {re.escape(str(cut))}:{len(lines) // 2 + 1}: malformed line", last
    )


def test_broken_dbc_and_config_name_the_culprit(tmp_path: Path) -> None:
    dbc = tmp_path / "broken.dbc"
    dbc.write_text("BO_ 1792 Demo: 8 CAM\n SG_ speed : 0|8@1+ (1,0 [0|255]\n")
    config = tmp_path / "agent.toml"
    base = (ROOT / "examples" / "replay.toml").read_text()
    config.write_text(
        base.replace('logged_channel = "can0"', 'logged_channel = "can0"\ndbc = "broken.dbc"')
    )
    result = decode(DRIVE_LOG, "--config", config)
    assert result.returncode == 1
    assert f"{dbc}: not a valid DBC file" in result.stderr
    config.write_text(base.replace("logged_channel", "loged_channel", 1))
    result = decode(DRIVE_LOG, "--config", config)
    assert result.returncode == 1
    assert "key 'bus[0].loged_channel': unknown key" in result.stderr


def test_error_frames_unknown_ids_and_odd_lengths_are_counted(tmp_path: Path) -> None:
    log = tmp_path / "odd.log"
    log.write_text(
        "(1772436600.000000) can0 700#1020010101000001\n"
        "(1772436600.000100) can0 20000080#0000000000000000\n"
        "(1772436600.000200) can0 5A0#0102\n"
        "(1772436600.000300) can0 700#10\n"
        "(1772436600.000400) can0 738#010A\n"
    )
    result = decode(log)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stderr.strip().splitlines()[-1])["summary"]
    counters = summary["buses"]["can0"]
    assert counters["error_frames"] == 1
    assert counters["unknown_id"] == 1
    assert counters["decoded"] == 3
    assert counters["short_frames"] == 2


def test_an_unknown_log_level_is_one_line_naming_the_choices() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "--log-level", "foo", "decode", str(DRIVE_LOG)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "argument --log-level: invalid choice: 'foo'" in result.stderr.splitlines()[-1]
