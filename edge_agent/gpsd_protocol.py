"""gpsd's JSON protocol without I/O: report lines in, ``GnssFix`` values and counters out.

Nothing here reads a clock, a socket or a random source: the caller passes the wall time
at which a line arrived and the random numbers the backoff needs, so every function is
deterministic and testable without gpsd. ``edge_agent.gnss`` wraps it around a socket.

A bad line is never an exception: it is counted by reason and skipped, because one
garbled report from gpsd must not stop the agent.
"""

from __future__ import annotations

import calendar
import ipaddress
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge_agent.errors import GnssError
from protocol.records import GnssFix

# Sent once per connection: stream JSON reports (TPV, SKY, ...) without raw NMEA.
WATCH_COMMAND = b'?WATCH={"enable":true,"json":true};\n'

# gpsd modes: 0 unknown, 1 no fix, 2 2D, 3 3D. Only 2D and 3D carry a position.
MODE_UNKNOWN = 0
MODE_NO_FIX = 1
MODE_2D = 2
MODE_3D = 3

# Plausibility bounds. Receivers stop reporting above the COCOM limits (about 514 m/s,
# 18 km), so larger values are garbage; the altitude bound leaves room below the Dead Sea
# in height above the ellipsoid, where the geoid lies up to ~106 m below it.
_MAX_SPEED_MPS = 515.0
_MIN_ALT_M = -1_000.0
_MAX_ALT_M = 50_000.0
# GPS time starts on 1980-01-06; an earlier fix time is a receiver bug, not a clock offset.
_GPS_EPOCH_MS = 315_964_800_000

# gpsd writes "2024-05-01T10:00:01.700Z": UTC with an optional fraction of any length.
# re.ASCII keeps \d from matching non-ASCII digits.
_TIME_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?Z", re.ASCII)


@dataclass(frozen=True, slots=True)
class TpvReport:
    """A TPV report: the fix mode, and the fix when the mode is 2D or 3D and timed."""

    mode: int
    fix: GnssFix | None
    # A 2D/3D report without a time: gpsd sends these while it knows the time of day from
    # GGA but not yet the date (before the first RMC). Valid, yet it cannot be placed.
    untimed: bool = False


@dataclass(frozen=True, slots=True)
class OtherReport:
    """A well-formed report of another class (VERSION, DEVICES, WATCH, SKY, ...)."""

    cls: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line that was skipped, and why (e.g. ``bad_json``, ``lat_out_of_range``)."""

    reason: str


ParsedLine = TpvReport | OtherReport | Rejected


class _RejectError(Exception):
    """Internal short-cut out of nested field checks; never leaves this module."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_line(line: bytes | str, received_ms: int) -> ParsedLine:
    """Parse one gpsd report line; ``received_ms`` is the wall time it arrived (Unix ms).

    Never raises: a line that cannot be used comes back as ``Rejected(reason)``.
    """
    try:
        obj = _decode(line)
        cls = obj.get("class")
        if cls is None:
            return Rejected("class_missing")
        if not isinstance(cls, str):
            return Rejected("class_wrong_type")
        if cls != "TPV":
            return OtherReport(cls)
        return _parse_tpv(obj, received_ms)
    except _RejectError as exc:
        return Rejected(exc.reason)


def _decode(line: bytes | str) -> dict[str, Any]:
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
    except UnicodeDecodeError:
        raise _RejectError("not_utf8") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    # RecursionError: a line of 60 000 "[" nests deeper than the decoder's stack.
    except (ValueError, RecursionError):
        raise _RejectError("bad_json") from None
    if not isinstance(obj, dict):
        raise _RejectError("not_object")
    return obj


def _reject_constant(name: str) -> Any:
    # json accepts NaN and Infinity by default; gpsd never sends them, so they are garbage.
    raise _RejectError("bad_json")


def _parse_tpv(obj: dict[str, Any], received_ms: int) -> TpvReport:
    mode = _int_field(obj, "mode", MODE_UNKNOWN, MODE_3D)
    if mode < MODE_2D:
        # No fix: gpsd may omit or keep stale position fields, so none are read.
        return TpvReport(mode, None)
    if obj.get("time") is None:
        return TpvReport(mode, None, untimed=True)
    time_ms = _parse_time_ms(obj["time"])
    lat = _float_field(obj, "lat", -90.0, 90.0)
    lon = _float_field(obj, "lon", -180.0, 180.0)
    if lat is None:
        raise _RejectError("lat_missing")
    if lon is None:
        raise _RejectError("lon_missing")
    fix = GnssFix(
        time_ms=time_ms,
        lat=lat,
        lon=lon,
        mode=mode,
        # A 2D fix has no valid altitude, whatever the receiver left in the field.
        alt_m=_altitude(obj) if mode == MODE_3D else None,
        speed_mps=_float_field(obj, "speed", 0.0, _MAX_SPEED_MPS),
        track_deg=_float_field(obj, "track", 0.0, 360.0),
        clock_offset_ms=received_ms - time_ms,
    )
    return TpvReport(mode, fix)


def _altitude(obj: dict[str, Any]) -> float | None:
    # gpsd >= 3.20 sends altHAE (ellipsoid) and keeps "alt" (MSL) for old clients.
    key = "altHAE" if "altHAE" in obj else "alt"
    return _float_field(obj, key, _MIN_ALT_M, _MAX_ALT_M)


def _required(obj: dict[str, Any], key: str) -> Any:
    value = obj.get(key)
    if value is None:
        raise _RejectError(f"{key}_missing")
    return value


def _int_field(obj: dict[str, Any], key: str, lo: int, hi: int) -> int:
    value = _required(obj, key)
    # bool is a subclass of int in Python, but ``true`` is not a mode.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _RejectError(f"{key}_wrong_type")
    if not lo <= value <= hi:
        raise _RejectError(f"{key}_out_of_range")
    return value


def _float_field(obj: dict[str, Any], key: str, lo: float, hi: float) -> float | None:
    """An optional number; absent (or null) is None, anything unusable rejects the line."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _RejectError(f"{key}_wrong_type")
    number = float(value)
    if not (math.isfinite(number) and lo <= number <= hi):
        raise _RejectError(f"{key}_out_of_range")
    return number


def _parse_time_ms(value: object) -> int:
    """gpsd's ISO 8601 UTC time to Unix milliseconds, truncating below 1 ms."""
    if not isinstance(value, str):
        raise _RejectError("time_wrong_type")
    match = _TIME_RE.fullmatch(value)
    if match is None:
        raise _RejectError("time_bad_format")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        # Second 60 is a leap second: valid in GNSS time, not in datetime, so check 59.
        datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError:
        raise _RejectError("time_out_of_range") from None
    if second > 60:
        raise _RejectError("time_out_of_range")
    # timegm is plain arithmetic, so a leap second simply lands on the next second's ms.
    whole_s = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    millis = int((match.group(7) or "0").ljust(3, "0")[:3])
    time_ms = whole_s * 1000 + millis
    if time_ms < _GPS_EPOCH_MS:
        raise _RejectError("time_out_of_range")
    return time_ms


class GpsdStream:
    """The state of one gpsd report stream: fix mode, epochs of fixes and counters.

    Pure: it only remembers what it was fed. ``fix_mode`` follows every TPV (so health can
    say "no fix"); ``latest`` is the newest fix, however old (its ``time_ms`` tells).

    gpsd cannot always tell where a receiver's NMEA cycle ends, and then sends one TPV per
    sentence: after a spell without fix, gpsd 3.22 sends a TPV after GGA (no track, speed
    derived from positions) and another after RMC, both with the same time. So a fix is
    held as *pending* and later reports of its epoch are merged into it; it becomes
    *complete* (``take_complete``) when a report of another epoch arrives, or when the
    caller ends it with ``flush`` after a quiet spell. One record per epoch, nothing lost.
    """

    def __init__(self) -> None:
        self.fix_mode: int = MODE_UNKNOWN
        self.latest: GnssFix | None = None
        self.malformed: Counter[str] = Counter()
        self.reports: Counter[str] = Counter()
        # TPV reports of the same epoch that were merged into its pending fix.
        self.merged_reports = 0
        # 2D/3D reports without a time (see ``TpvReport.untimed``), skipped.
        self.untimed_reports = 0
        # Reports that came after their epoch had been flushed (see ``_add_fix``).
        self.late_reports = 0
        self._flushed_ms: int | None = None
        self._pending: GnssFix | None = None
        self._complete: list[GnssFix] = []

    @property
    def pending(self) -> bool:
        """Whether a fix waits for more reports of its epoch."""
        return self._pending is not None

    def feed(self, line: bytes | str, received_ms: int) -> ParsedLine:
        """Parse a line, update the state, and return what the line was."""
        parsed = parse_line(line, received_ms)
        if isinstance(parsed, Rejected):
            self.malformed[parsed.reason] += 1
        elif isinstance(parsed, OtherReport):
            self.reports[parsed.cls] += 1
        else:
            self.reports["TPV"] += 1
            self.fix_mode = parsed.mode
            self.untimed_reports += parsed.untimed
            if parsed.fix is not None:
                self._add_fix(parsed.fix)
        return parsed

    def _add_fix(self, fix: GnssFix) -> None:
        pending = self._pending
        if pending is not None and pending.time_ms == fix.time_ms:
            self._pending = self.latest = merge_fixes(pending, fix)
            self.merged_reports += 1
        elif self._flushed_ms == fix.time_ms and self.latest is not None:
            # A report of an epoch that was already flushed as complete: the wait was too
            # short for this receiver. Keep the data in latest but send no second record.
            self.latest = merge_fixes(self.latest, fix)
            self.late_reports += 1
        else:
            if pending is not None:
                self._complete.append(pending)
            self._pending = self.latest = fix

    def take_complete(self) -> list[GnssFix]:
        """The fixes whose epoch ended since the last call, oldest first."""
        complete, self._complete = self._complete, []
        return complete

    def flush(self) -> list[GnssFix]:
        """End the pending epoch too (after a quiet spell, or when the stream ends)."""
        if self._pending is not None:
            self._complete.append(self._pending)
            self._flushed_ms = self._pending.time_ms
            self._pending = None
        return self.take_complete()

    def count_malformed(self, reason: str) -> None:
        """Count a line the transport dropped before parsing (e.g. ``line_too_long``)."""
        self.malformed[reason] += 1

    def lost(self) -> None:
        """The stream ended: the fix state is unknown until gpsd reports again."""
        self.fix_mode = MODE_UNKNOWN


def merge_fixes(earlier: GnssFix, later: GnssFix) -> GnssFix:
    """Two reports of one epoch as one fix: the later one's values, gaps filled from the
    earlier one, and the earlier arrival's clock offset (the closer one to the epoch)."""
    alt_m = later.alt_m if later.alt_m is not None else earlier.alt_m
    return GnssFix(
        time_ms=later.time_ms,
        lat=later.lat,
        lon=later.lon,
        mode=later.mode,
        alt_m=alt_m if later.mode == MODE_3D else None,
        speed_mps=later.speed_mps if later.speed_mps is not None else earlier.speed_mps,
        track_deg=later.track_deg if later.track_deg is not None else earlier.track_deg,
        clock_offset_ms=earlier.clock_offset_ms,
    )


# A host name or IPv4 address: letters, digits, dots, dashes, underscores.
_HOST_RE = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)
_PORT_RE = re.compile(r"[0-9]{1,5}", re.ASCII)


def parse_endpoint(text: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[ipv6]:port"`` to ``(host, port)``; raises ``GnssError``."""
    value = text.strip()
    if value.startswith("["):
        host, sep, port_text = value[1:].partition("]:")
        if not sep:
            raise GnssError(f"gpsd address {text!r}: expected [IPv6 address]:port, e.g. [::1]:2947")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise GnssError(f"gpsd address {text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise GnssError(f"gpsd address {text!r}: expected host:port, e.g. localhost:2947")
        if ":" in host:
            raise GnssError(
                f"gpsd address {text!r}: write an IPv6 address in brackets, e.g. [::1]:2947"
            )
        if not _HOST_RE.fullmatch(host):
            raise GnssError(f"gpsd address {text!r}: {host!r} is not a host name or address")
    return host, _parse_port(text, port_text)


def _parse_port(text: str, port_text: str) -> int:
    port = int(port_text) if _PORT_RE.fullmatch(port_text) else 0
    if not 1 <= port <= 65535:
        raise GnssError(f"gpsd address {text!r}: port {port_text!r} is not in 1..65535")
    return port
