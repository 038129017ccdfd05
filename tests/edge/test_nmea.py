"""NMEA track files: fixes from RMC + GGA, bad lines counted and skipped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.errors import GnssError
from edge_agent.nmea import NmeaStats, read_nmea

ROOT = Path(__file__).resolve().parents[2]

GOOD = [
    "$GPGGA,073000.00,3733.88963,N,12658.68862,E,1,10,0.80,38.0,M,24.6,M,,*68",
    "$GPRMC,073000.00,A,3733.88963,N,12658.68862,E,0.000,351.00,020326,,,A*6A",
]


def test_rmc_with_gga_gives_a_3d_fix(tmp_path: Path) -> None:
    path = tmp_path / "t.nmea"
    path.write_text("\n".join(GOOD) + "\n")
    (fix,) = read_nmea(path)
    assert fix.time_ms == 1772436600000  # 2026-03-02T07:30:00Z
    assert fix.lat == pytest.approx(37 + 33.88963 / 60)
    assert fix.lon == pytest.approx(126 + 58.68862 / 60)
    assert (fix.mode, fix.alt_m, fix.speed_mps, fix.track_deg) == (3, 38.0, 0.0, 351.0)


def test_bad_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.nmea"
    path.write_text(
        "\n".join(
            [
                GOOD[1].replace("*6A", "*00"),  # bad checksum
                "garbage",
                "$GPRMC,073001.00,A,37xx.8,N,12658.6,E,0,0,020326,,,A*"
                + format(_xor("GPRMC,073001.00,A,37xx.8,N,12658.6,E,0,0,020326,,,A"), "02X"),
                GOOD[1],
                "$GPRMC,073002.00,V,,,,,,,020326,,,N*"
                + format(_xor("GPRMC,073002.00,V,,,,,,,020326,,,N"), "02X"),  # no fix
            ]
        )
    )
    stats = NmeaStats()
    fixes = list(read_nmea(path, stats))
    assert [f.time_ms for f in fixes] == [1772436600000]
    assert fixes[0].mode == 2  # no GGA for that second
    assert stats.bad_lines == 3


def _xor(body: str) -> int:
    value = 0
    for ch in body:
        value ^= ord(ch)
    return value


def test_missing_file_is_a_gnss_error(tmp_path: Path) -> None:
    with pytest.raises(GnssError, match=r"nope\.nmea: cannot read NMEA file"):
        list(read_nmea(tmp_path / "nope.nmea"))


def test_decode_attaches_positions_from_the_track() -> None:
    drives = ROOT / "hw_fixtures" / "drives"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_agent.cli",
            "decode",
            str(drives / "drive.log"),
            "--nmea",
            str(drives / "drive.nmea"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events
    for event in events:  # central Seoul
        assert 37.5 < event["lat"] < 37.6
        assert 126.9 < event["lon"] < 127.0
