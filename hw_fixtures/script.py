"""The scripted drive: one ~106 s cycle of an urban taxi trip, as pure functions of time.

Everything here is in *cycle time* (seconds since the start of a cycle). A longer recording
repeats the cycle back to back; the route keeps going (see :mod:`hw_fixtures.route`).

Sign conventions: lateral values right-positive (Mobileye), yaw/steering left-positive
(Hyundai/ISO), course clockwise from north (NMEA).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Final

G: Final = 9.80665
KMH: Final = 1 / 3.6

CYCLE_S: Final = 106.0

# --- scripted moments (cycle time, s) -------------------------------------------------
LDW_LEFT_T: Final = 19.0
LDW_RIGHT_T: Final = 25.0
LDW_FRAMES: Final = 5
TSR_SIGN_T: Final = 38.2
TSR_SIGN_RAW: Final = 4  # regular speed limit 50
TSR_LIMIT_KMH: Final = 50
SIGN_DROP_T: Final = 57.0  # the limit is dropped after the intersection
WIPERS_ON_T: Final = 52.0
LOW_BEAM_ON_T: Final = 53.5
FCW_T: Final = 65.0
HARSH_BRAKE_T: Final = 71.0
HARSH_BRAKE_S: Final = 1.5
HARSH_BRAKE_G: Final = 0.45
ABS_WINDOW: Final = (71.25, 71.85)
UFCW_T: Final = 77.0
PEDS_DZ_T: Final = 84.0
PEDS_DZ_S: Final = 2.0
PCW_T: Final = 84.4
WARNING_S: Final = 1.0  # FCW / UFCW / PCW / HW / TSR sound duration
FAILSAFE_T: Final = 91.0
FAILSAFE_S: Final = 4.0
TURN_MID_T: Final = 57.0  # the route's first turn is centred on this moment (cycle 0)
# Camera timing anomalies (seen on the real unit): one late burst, one back-to-back burst.
LATE_BURST_T: Final = 10.5
BACK_TO_BACK_T: Final = 99.0
# The camera's speed echo (0x760): whole km/h, refreshed every 0.4-0.5 s and held in between,
# and now and then 0 for 0.5-2 s before it comes back at the car's speed (a dropout).
CAMERA_SPEED_REFRESH_S: Final = (0.4, 0.5)
CAMERA_SPEED_DROPOUTS: Final[tuple[tuple[float, float], ...]] = (  # (start, duration)
    (26.5, 0.6),  # cruising at 60 km/h
    (49.6, 1.2),  # slowing for the turn
    (62.0, 1.9),  # pulling away after the turn
    (93.0, 0.9),  # at 20 km/h in the slow queue
)
# Ordinary stops, constant deceleration (start, from km/h, g): no harsh braking.
QUEUE_STOP: Final = (77.5, 25.0, 0.22)
END_STOP: Final = (96.5, 20.0, 0.16)

HW_THRESHOLD_S: Final = 1.0  # configured headway warning threshold
HW_MIN_SPEED_KMH: Final = 30.0  # headway warning only at or above this speed
LDW_ON_KMH: Final = 55.0
LDW_OFF_KMH: Final = 52.0

# --- speed profile ------------------------------------------------------------------------
_HARSH_END_KMH: Final = 44.0 - HARSH_BRAKE_G * G * HARSH_BRAKE_S * 3.6


def stop_end(stop: tuple[float, float, float]) -> float:
    """When a constant-deceleration stop (start, from km/h, g) reaches 0."""
    t0, kmh, g = stop
    return t0 + kmh * KMH / (g * G)


# (cycle time, km/h, shape of the segment that starts here: "s" smooth, "l" linear)
SPEED_KEYS: Final[tuple[tuple[float, float, str], ...]] = (
    (0.0, 0.0, "s"),
    (4.0, 0.0, "s"),
    (16.0, 60.0, "s"),
    (33.0, 60.0, "s"),
    (38.0, 45.0, "s"),
    (41.0, 45.0, "s"),
    (45.0, 58.0, "s"),
    (48.0, 58.0, "s"),
    (55.0, 22.0, "s"),
    (59.0, 22.0, "s"),
    (64.0, 50.0, "s"),
    (66.0, 50.0, "s"),
    (68.0, 44.0, "s"),
    (HARSH_BRAKE_T, 44.0, "l"),
    (HARSH_BRAKE_T + HARSH_BRAKE_S, _HARSH_END_KMH, "s"),
    (74.5, _HARSH_END_KMH, "s"),
    (76.5, 25.0, "s"),
    (QUEUE_STOP[0], QUEUE_STOP[1], "l"),
    (stop_end(QUEUE_STOP), 0.0, "s"),
    (81.6, 0.0, "s"),
    (83.8, 15.0, "s"),
    (84.5, 15.0, "s"),
    (86.5, 5.0, "s"),
    (87.5, 5.0, "s"),
    (90.5, 20.0, "s"),
    (END_STOP[0], END_STOP[1], "l"),
    (stop_end(END_STOP), 0.0, "s"),
    (CYCLE_S, 0.0, "s"),
)
_KEY_TIMES: Final = [k[0] for k in SPEED_KEYS]


def keyed(keys: tuple[tuple[float, float], ...], t: float) -> float:
    """Piecewise-linear interpolation through (t, value) keys, clamped at both ends."""
    if t <= keys[0][0]:
        return keys[0][1]
    if t >= keys[-1][0]:
        return keys[-1][1]
    i = bisect_right([k[0] for k in keys], t) - 1
    (t0, v0), (t1, v1) = keys[i], keys[i + 1]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def smooth_keyed(keys: tuple[tuple[float, float], ...], t: float) -> float:
    """Like :func:`keyed` but with smoothstep easing between keys."""
    if t <= keys[0][0]:
        return keys[0][1]
    if t >= keys[-1][0]:
        return keys[-1][1]
    i = bisect_right([k[0] for k in keys], t) - 1
    (t0, v0), (t1, v1) = keys[i], keys[i + 1]
    u = (t - t0) / (t1 - t0)
    return v0 + (v1 - v0) * u * u * (3 - 2 * u)


def speed_accel(tc: float) -> tuple[float, float]:
    """Ego speed (m/s) and longitudinal acceleration (m/s²) at cycle time ``tc``."""
    if tc >= CYCLE_S:
        return 0.0, 0.0
    i = max(0, bisect_right(_KEY_TIMES, tc) - 1)
    t0, k0, shape = SPEED_KEYS[i]
    t1, k1, _ = SPEED_KEYS[i + 1]
    span = t1 - t0
    u = (tc - t0) / span
    dv = (k1 - k0) * KMH
    if shape == "l":
        return k0 * KMH + dv * u, dv / span
    return k0 * KMH + dv * u * u * (3 - 2 * u), dv * 6 * u * (1 - u) / span


# --- lanes ------------------------------------------------------------------------------
# Lane-marking quality over the cycle (0-1 low, 2-3 high).
_QUALITY: Final[tuple[tuple[float, int], ...]] = (
    (0.0, 2),
    (3.0, 3),
    (WIPERS_ON_T, 2),
    (56.0, 0),  # crossing / turning at the intersection: no markings
    (61.0, 1),
    (63.5, 2),
    (FAILSAFE_T, 0),
    (FAILSAFE_T + FAILSAFE_S, 1),
)


def lane_quality(tc: float) -> int:
    i = bisect_right([q[0] for q in _QUALITY], tc) - 1
    return _QUALITY[max(i, 0)][1]


def _bump(tc: float, start: float, length: float) -> float:
    """Raised cosine 0 -> 1 -> 0 over [start, start + length]."""
    if not start < tc < start + length:
        return 0.0
    return (1 - math.cos(2 * math.pi * (tc - start) / length)) / 2


_WEAVE: Final = ((0.12, 380.0), (0.04, 120.0))  # (amplitude m, wavelength m)
_DRIFTS: Final = ((-0.85, LDW_LEFT_T - 1.5), (0.85, LDW_RIGHT_T - 1.5))  # (peak m, start)
_DRIFT_S: Final = 4.0


def lateral_offset(s: float, tc: float) -> float:
    """Ego offset from the lane centre, m, right-positive.

    A gentle weave along the road (a function of distance, so it stops when the car does)
    plus two scripted drifts towards the markings for the LDW events.
    """
    weave = sum(a * math.sin(2 * math.pi * s / wl) for a, wl in _WEAVE)
    return weave + sum(peak * _bump(tc, t0, _DRIFT_S) for peak, t0 in _DRIFTS)


def lateral_curvature(s: float, tc: float, v: float) -> float:
    """Curvature (1/m, left-positive) needed to follow :func:`lateral_offset` at speed v."""
    weave = sum(-a * (2 * math.pi / wl) ** 2 * math.sin(2 * math.pi * s / wl) for a, wl in _WEAVE)
    drift = 0.0
    for peak, t0 in _DRIFTS:
        if t0 < tc < t0 + _DRIFT_S:
            w = 2 * math.pi / _DRIFT_S
            drift += peak * w * w * math.cos(w * (tc - t0)) / 2
    # moving right (offset growing) is a right-hand (negative) curvature
    return -(weave + drift / max(v, 3.0) ** 2)


# --- obstacles ------------------------------------------------------------------------------
VEHICLE, TRUCK, BIKE, PEDESTRIAN = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class ObstacleSpec:
    """One scripted object in front of the camera.

    ``x_mode``: ``"hw"`` keys are headway seconds (x = headway * ego speed); ``"speed"`` keys
    are the object's own longitudinal speed in km/h, starting ``x0`` metres ahead; ``"x"``
    keys are the distance in metres.
    """

    obstacle_id: int
    kind: int
    t0: float
    t1: float
    x_mode: str
    x_keys: tuple[tuple[float, float], ...]
    y_keys: tuple[tuple[float, float], ...]
    x0: float = 0.0
    width_m: float = 1.85
    parked: bool = False
    in_path: bool = False  # a vehicle that can be the CIPV while |y| < 1.5 m
    blinker: tuple[tuple[float, float, int], ...] = ()  # (t0, t1, blinker_info)


OBSTACLES: Final[tuple[ObstacleSpec, ...]] = (
    # A parked truck on the right while pulling away.
    ObstacleSpec(
        3,
        TRUCK,
        9.5,
        13.5,
        "speed",
        ((9.5, 0.0),),
        ((9.5, 5.2),),
        x0=55.0,
        width_m=2.45,
        parked=True,
    ),
    # Lead car on Sejong-daero: headway closes to 0.8 s (headway warning), then changes lanes.
    ObstacleSpec(
        12,
        VEHICLE,
        21.0,
        47.5,
        "hw",
        ((21.0, 2.5), (28.5, 1.15), (32.0, 0.8), (35.5, 1.15), (39.0, 1.6), (47.5, 1.9)),
        ((21.0, 0.2), (46.3, 0.1), (47.5, -3.2)),
        in_path=True,
        blinker=((45.8, 47.5, 2),),
    ),
    # A car in the left lane.
    ObstacleSpec(
        9,
        VEHICLE,
        23.0,
        44.0,
        "x",
        ((23.0, 32.0), (30.0, 26.0), (37.0, 30.0), (44.0, 46.0)),
        ((23.0, -3.5), (44.0, -3.3)),
        width_m=1.8,
    ),
    # Lead car after the turn: brakes hard and turns off into a side street (FCW).
    ObstacleSpec(
        17,
        VEHICLE,
        60.5,
        66.6,
        "speed",
        ((60.5, 38.0), (62.0, 50.0), (63.5, 50.0), (65.0, 17.6), (66.6, 8.0)),
        ((60.5, 0.15), (65.0, 0.1), (65.8, 2.6), (66.6, 3.6)),
        x0=22.0,
        width_m=1.9,
        in_path=True,
        blinker=((64.6, 66.6, 3),),
    ),
    # A motorbike crossing from the left at close range (the driver brakes hard).
    ObstacleSpec(
        26,
        BIKE,
        70.3,
        72.8,
        "speed",
        ((70.3, 5.0),),
        ((70.3, -4.5), (72.8, 4.5)),
        x0=24.0,
        width_m=0.8,
    ),
    # Queue traffic: the lead stops suddenly at low speed (urban FCW).
    ObstacleSpec(
        23,
        VEHICLE,
        73.5,
        82.5,
        "speed",
        (
            (73.5, 21.0),
            (75.5, 25.0),
            (76.0, 25.0),
            (76.9, 8.0),
            (78.5, 8.0),
            (80.5, 12.0),
            (82.5, 24.0),
        ),
        ((73.5, -0.1), (82.5, 0.1)),
        x0=14.5,
        width_m=1.8,
        in_path=True,
    ),
    # A pedestrian crossing from the right (pedestrian in danger zone, PCW).
    ObstacleSpec(
        5,
        PEDESTRIAN,
        82.5,
        88.0,
        "speed",
        ((82.5, 0.0),),
        ((82.5, 3.6), (88.0, -4.1)),
        x0=20.0,
        width_m=0.6,
    ),
    # Lead car at the end: the taxi stops behind it.
    ObstacleSpec(
        31,
        VEHICLE,
        96.5,
        CYCLE_S,
        "speed",
        ((96.5, 22.0), (100.5, 0.0), (CYCLE_S, 0.0)),
        ((96.5, 0.05), (CYCLE_S, 0.05)),
        x0=8.0,
        width_m=1.8,
        in_path=True,
    ),
)


@dataclass(frozen=True, slots=True)
class ScriptedWindow:
    """A warning the camera raises for a fixed time (cycle time)."""

    kind: str
    t0: float
    duration: float


FCW_WINDOW: Final = ScriptedWindow("fcw", FCW_T, WARNING_S)
UFCW_WINDOW: Final = ScriptedWindow("urban_fcw", UFCW_T, WARNING_S)
PCW_WINDOW: Final = ScriptedWindow("pcw", PCW_T, WARNING_S)
PEDS_DZ_WINDOW: Final = ScriptedWindow("peds_in_dz", PEDS_DZ_T, PEDS_DZ_S)
FAILSAFE_WINDOW: Final = ScriptedWindow("camera_failsafe", FAILSAFE_T, FAILSAFE_S)


def in_window(w: ScriptedWindow, tc: float) -> bool:
    return w.t0 <= tc < w.t0 + w.duration


def wipers_on(tc: float) -> bool:
    return tc >= WIPERS_ON_T


def outside_temp_c(tc: float) -> float:
    """Outside temperature: a mild March afternoon, cooling once the rain starts."""
    rain = max(0.0, tc - WIPERS_ON_T)
    return 9.5 - 1.5 * (1 - math.exp(-rain / 20.0))
