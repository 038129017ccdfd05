"""Named urban tracks, their geometry, and NMEA 0183 sentences for the GNSS side.

A track is an approach bearing plus waypoints (lat, lon); the first waypoint is the first
turn. The start point is placed so that the middle of that turn is reached at
:data:`hw_fixtures.script.TURN_MID_T`, when the scripted drive is slow. Corners are filleted
with circular arcs, so heading and curvature are continuous enough to derive steering,
yaw rate and lateral acceleration. Past the last waypoint the road goes straight on.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Final

EARTH_RADIUS_M: Final = 6_371_008.8
KNOTS_PER_MPS: Final = 3600 / 1852
FIRST_TURN_RADIUS_M: Final = 15.0
BEND_RADIUS_M: Final = 250.0
SHARP_TURN_RAD: Final = math.radians(45)


@dataclass(frozen=True, slots=True)
class Track:
    name: str
    description: str
    approach_course_deg: float
    waypoints: tuple[tuple[float, float], ...]


TRACKS: Final[dict[str, Track]] = {
    t.name: t
    for t in (
        Track(
            "seoul",
            "Central Seoul: north on Sejong-daero past City Hall, right at the Sejongno "
            "intersection (Gwanghwamun) onto Jongno, east past Jonggak and Jongno 3-ga "
            "towards Dongdaemun and Cheongnyangni",
            351.0,
            (
                (37.57100, 126.97690),
                (37.57020, 126.98280),
                (37.57040, 126.99200),
                (37.57090, 127.00190),
                (37.57120, 127.00930),
                (37.57570, 127.02480),
                (37.57810, 127.03480),
                (37.58000, 127.04480),
            ),
        ),
        Track(
            "gangnam",
            "Gangnam: south on Gangnam-daero, left at Gangnam station onto Teheran-ro, east "
            "past Yeoksam and Seolleung towards Samseong",
            165.0,
            (
                (37.49795, 127.02760),
                (37.50070, 127.03640),
                (37.50450, 127.04900),
                (37.50890, 127.06310),
            ),
        ),
        Track(
            "euljiro",
            "Jung-gu: north-east on Namdaemun-ro, right at Euljiro 1-ga onto Eulji-ro, east "
            "past Euljiro 3-ga and 4-ga towards Dongdaemun History & Culture Park",
            20.0,
            (
                (37.56600, 126.98200),
                (37.56630, 126.99160),
                (37.56670, 126.99800),
                (37.56580, 127.00780),
            ),
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Pose:
    x: float  # east, m
    y: float  # north, m
    theta: float  # heading, rad, counter-clockwise from east
    curvature: float  # 1/m, left-positive

    @property
    def course_deg(self) -> float:
        """Course over ground, degrees clockwise from true north."""
        return (90.0 - math.degrees(self.theta)) % 360.0


@dataclass(frozen=True, slots=True)
class _Segment:
    s0: float
    length: float
    x0: float
    y0: float
    theta0: float
    turn: int  # 0 straight, +1 left arc, -1 right arc
    radius: float


@dataclass(frozen=True, slots=True)
class Turn:
    """A sharp corner of the path (blinker-worthy)."""

    s_start: float
    s_end: float
    direction: int  # +1 left, -1 right


class Path:
    """A route in a local east/north frame around its first turn."""

    def __init__(self, track: Track, first_turn_mid_s: float) -> None:
        self.track = track
        self.lat0, self.lon0 = track.waypoints[0]
        self._coslat0 = math.cos(math.radians(self.lat0))
        pts = [self._to_local(lat, lon) for lat, lon in track.waypoints]
        approach = math.radians(90.0 - track.approach_course_deg)
        out0 = math.atan2(pts[1][1] - pts[0][1], pts[1][0] - pts[0][0])
        delta0 = _wrap(out0 - approach)
        tangent0 = FIRST_TURN_RADIUS_M * math.tan(abs(delta0) / 2)
        arc0 = FIRST_TURN_RADIUS_M * abs(delta0)
        lead_in = first_turn_mid_s + tangent0 - arc0 / 2
        start = (pts[0][0] - lead_in * math.cos(approach), pts[0][1] - lead_in * math.sin(approach))
        self.segments: list[_Segment] = []
        self.turns: list[Turn] = []
        self._build([start, *pts])
        self._starts = [seg.s0 for seg in self.segments]

    def _to_local(self, lat: float, lon: float) -> tuple[float, float]:
        return (
            math.radians(lon - self.lon0) * EARTH_RADIUS_M * self._coslat0,
            math.radians(lat - self.lat0) * EARTH_RADIUS_M,
        )

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        lat = self.lat0 + math.degrees(y / EARTH_RADIUS_M)
        lon = self.lon0 + math.degrees(x / (EARTH_RADIUS_M * self._coslat0))
        return lat, lon

    def _build(self, pts: list[tuple[float, float]]) -> None:
        n = len(pts)
        headings = [
            math.atan2(pts[i + 1][1] - pts[i][1], pts[i + 1][0] - pts[i][0]) for i in range(n - 1)
        ]
        lengths = [math.dist(pts[i], pts[i + 1]) for i in range(n - 1)]
        # fillet at every interior vertex
        tangents = [0.0] * n
        radii = [0.0] * n
        for i in range(1, n - 1):
            delta = abs(_wrap(headings[i] - headings[i - 1]))
            if delta < 1e-6:
                continue
            radius = FIRST_TURN_RADIUS_M if i == 1 else BEND_RADIUS_M
            limit = 0.45 * min(lengths[i - 1], lengths[i])
            if i > 1 and radius * math.tan(delta / 2) > limit:
                radius = limit / math.tan(delta / 2)
            radii[i] = radius
            tangents[i] = radius * math.tan(delta / 2)
        s = 0.0
        for i in range(n - 1):
            theta = headings[i]
            ux, uy = math.cos(theta), math.sin(theta)
            a = (pts[i][0] + ux * tangents[i], pts[i][1] + uy * tangents[i])
            straight = lengths[i] - tangents[i] - tangents[i + 1]
            if i == n - 2:
                straight = 1e7  # the road goes on
            self.segments.append(_Segment(s, straight, a[0], a[1], theta, 0, 0.0))
            s += straight
            if i < n - 2 and radii[i + 1] > 0:
                delta = _wrap(headings[i + 1] - theta)
                turn = 1 if delta > 0 else -1
                arc = radii[i + 1] * abs(delta)
                b = (a[0] + ux * straight, a[1] + uy * straight)
                self.segments.append(_Segment(s, arc, b[0], b[1], theta, turn, radii[i + 1]))
                if abs(delta) >= SHARP_TURN_RAD:
                    self.turns.append(Turn(s, s + arc, turn))
                s += arc

    def pose(self, s: float) -> Pose:
        seg = self.segments[max(0, bisect_right(self._starts, s) - 1)]
        d = s - seg.s0
        if seg.turn == 0:
            return Pose(
                seg.x0 + d * math.cos(seg.theta0),
                seg.y0 + d * math.sin(seg.theta0),
                seg.theta0,
                0.0,
            )
        r, k = seg.radius, seg.turn
        cx = seg.x0 - k * r * math.sin(seg.theta0)
        cy = seg.y0 + k * r * math.cos(seg.theta0)
        theta = seg.theta0 + k * d / r
        phi = theta - k * math.pi / 2
        return Pose(cx + r * math.cos(phi), cy + r * math.sin(phi), theta, k / r)


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


# --- NMEA 0183 ----------------------------------------------------------------------------


def nmea_checksum(body: str) -> str:
    """XOR of the characters between ``$`` and ``*``, two upper-case hex digits."""
    c = 0
    for ch in body:
        c ^= ord(ch)
    return f"{c:02X}"


def _sentence(body: str) -> str:
    return f"${body}*{nmea_checksum(body)}\r\n"


def _lat(lat: float) -> str:
    hemi = "N" if lat >= 0 else "S"
    lat = abs(lat)
    deg = int(lat)
    return f"{deg:02d}{(lat - deg) * 60:08.5f},{hemi}"


def _lon(lon: float) -> str:
    hemi = "E" if lon >= 0 else "W"
    lon = abs(lon)
    deg = int(lon)
    return f"{deg:03d}{(lon - deg) * 60:08.5f},{hemi}"


def nmea_fix(
    *,
    hhmmss: str,
    ddmmyy: str,
    lat: float,
    lon: float,
    speed_mps: float,
    course_deg: float,
    sats: int,
    hdop: float,
    alt_m: float,
    geoid_m: float,
) -> str:
    """One epoch: a GGA and an RMC sentence (NMEA 2.3, GPS talker, CRLF line ends)."""
    gga = (
        f"GPGGA,{hhmmss}.00,{_lat(lat)},{_lon(lon)},1,{sats:02d},{hdop:.2f},"
        f"{alt_m:.1f},M,{geoid_m:.1f},M,,"
    )
    rmc = (
        f"GPRMC,{hhmmss}.00,A,{_lat(lat)},{_lon(lon)},{speed_mps * KNOTS_PER_MPS:.3f},"
        f"{course_deg:.2f},{ddmmyy},,,A"
    )
    return _sentence(gga) + _sentence(rmc)
