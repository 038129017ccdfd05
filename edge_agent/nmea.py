"""NMEA 0183 track files (RMC + GGA) as GNSS fixes, for replaying a drive without gpsd.

Only the two sentences a GNSS track needs are read: RMC gives date, time, position,
speed and course; GGA of the same second adds fix quality and altitude. Lines with a bad
checksum or layout are counted and skipped, like gpsd does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.errors import GnssError
from protocol.records import GnssFix

KNOTS_TO_MPS = 1852 / 3600


@dataclass
class NmeaStats:
    sentences: int = 0
    bad_lines: int = 0


def _checksum_ok(line: str) -> bool:
    body, star, given = line.partition("*")
    if not star or not body.startswith("$"):
        return False
    value = 0
    for ch in body[1:]:
        value ^= ord(ch)
    return given[:2].upper() == f"{value:02X}"


def _degrees(value: str, hemisphere: str) -> float:
    """``dddmm.mmmm`` plus hemisphere to signed decimal degrees."""
    raw = float(value)
    whole = int(raw // 100)
    deg = whole + (raw - whole * 100) / 60
    return -deg if hemisphere in ("S", "W") else deg


def _optional(value: str) -> float | None:
    return float(value) if value else None


def read_nmea(path: Path, stats: NmeaStats | None = None) -> Iterator[GnssFix]:
    """Fixes from an NMEA file, one per RMC sentence with status A (valid)."""
    stats = stats if stats is not None else NmeaStats()
    altitude: dict[str, tuple[float | None, int]] = {}  # hhmmss -> (alt, mode) from GGA
    try:
        lines = path.read_text(encoding="ascii", errors="replace").splitlines()
    except OSError as exc:
        raise GnssError(f"{path}: cannot read NMEA file: {exc.strerror or exc}") from None
    for raw_line in lines:
        line = raw_line.strip()
        if not line:
            continue
        if not _checksum_ok(line):
            stats.bad_lines += 1
            continue
        fields = line.partition("*")[0].split(",")
        kind = fields[0][3:]
        try:
            if kind == "GGA" and len(fields) >= 10:
                quality = int(fields[6] or 0)
                altitude[fields[1][:6]] = (_optional(fields[9]), 3 if quality > 0 else 1)
            elif kind == "RMC" and len(fields) >= 10 and fields[2] == "A":
                stats.sentences += 1
                when = datetime.strptime(fields[9] + fields[1][:6], "%d%m%y%H%M%S").replace(
                    tzinfo=UTC
                )
                frac_ms = round(float("0" + fields[1][6:]) * 1000) if len(fields[1]) > 6 else 0
                alt, mode = altitude.pop(fields[1][:6], (None, 2))
                speed_kn = _optional(fields[7])
                yield GnssFix(
                    time_ms=int(when.timestamp()) * 1000 + frac_ms,
                    lat=round(_degrees(fields[3], fields[4]), 7),
                    lon=round(_degrees(fields[5], fields[6]), 7),
                    mode=mode,
                    alt_m=alt,
                    speed_mps=None if speed_kn is None else round(speed_kn * KNOTS_TO_MPS, 3),
                    track_deg=_optional(fields[8]),
                )
        except (ValueError, IndexError):
            stats.bad_lines += 1
