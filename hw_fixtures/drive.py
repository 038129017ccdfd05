"""Physical state of the simulated taxi over a whole recording.

The ego speed profile is sampled once on a 10 ms grid and integrated to a distance along
the route; everything else (pose, wheel speeds, steering, obstacles) is derived from it, so
the vehicle bus, the camera and the GNSS track agree with each other.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass
from typing import Final

from hw_fixtures import script
from hw_fixtures.route import TRACKS, Path, Pose

DT: Final = 0.01
WHEELBASE_M: Final = 2.84
STEERING_RATIO: Final = 13.5
TRACK_WIDTH_M: Final = 1.6
# Tyre-radius errors FL, FR, RL, RR: wheel speeds differ slightly, as on a real car.
TYRE_ERROR: Final = (0.0021, -0.0012, 0.0009, -0.0017)
BLINK_PERIOD_S: Final = 0.66
BLINK_ON_S: Final = 0.36
BLINKER_LEAD_M: Final = 60.0
WIPER_PERIOD_S: Final = 1.25
WIPER_BLADE_S: Final = 0.8


@dataclass(frozen=True, slots=True)
class VehicleState:
    speed_kmh: float
    accel: float  # m/s², forward-positive
    wheel_kmh: tuple[float, float, float, float]
    steering_deg: float  # left-positive
    steering_rate_dps: float
    yaw_rate_dps: float  # left-positive
    lat_accel: float  # m/s², left-positive
    braking: bool
    cyl_pres_bar: float
    abs_active: bool
    standstill: bool
    blinker_left: bool
    blinker_right: bool
    wiper_switch: bool
    wiper_blade: bool
    low_beam: bool
    outside_temp_c: float


@dataclass(frozen=True, slots=True)
class ObstacleSample:
    spec: script.ObstacleSpec
    x: float
    y: float
    rel_vx: float
    v_obj: float
    a_obj: float
    angle_deg: float
    angle_rate_dps: float
    moved: bool


class _ObstacleTrack:
    """An obstacle's kinematics over its window, sampled on the cycle grid."""

    def __init__(self, spec: script.ObstacleSpec) -> None:
        self.spec = spec
        n = round((spec.t1 - spec.t0) / DT) + 1
        xs: list[float] = []
        vobj: list[float] = []
        x = spec.x0
        for k in range(n):
            tc = spec.t0 + k * DT
            v_ego, _ = script.speed_accel(tc)
            if spec.x_mode == "hw":
                x = script.smooth_keyed(spec.x_keys, tc) * max(v_ego, 1.0)
            elif spec.x_mode == "x":
                x = script.smooth_keyed(spec.x_keys, tc)
            elif k > 0:
                v_prev = script.keyed(spec.x_keys, tc - DT) * script.KMH
                v_now = script.keyed(spec.x_keys, tc) * script.KMH
                ego_prev, _ = script.speed_accel(tc - DT)
                x += ((v_prev + v_now) / 2 - (ego_prev + v_ego) / 2) * DT
            xs.append(x)
        for k in range(n):
            tc = spec.t0 + k * DT
            v_ego, _ = script.speed_accel(tc)
            if spec.x_mode == "speed":
                vobj.append(script.keyed(spec.x_keys, tc) * script.KMH)
            else:
                lo, hi = max(k - 1, 0), min(k + 1, n - 1)
                vobj.append(v_ego + (xs[hi] - xs[lo]) / ((hi - lo) * DT))
        moved: list[bool] = []
        seen = False
        for vk in vobj:
            seen = seen or (vk > 0.3 and not spec.parked)
            moved.append(seen)
        self.x = xs
        self.v = vobj
        self.moved = moved
        self.n = n

    def sample(self, tc: float) -> ObstacleSample | None:
        spec = self.spec
        if not spec.t0 <= tc < spec.t1:
            return None
        k = min(int((tc - spec.t0) / DT), self.n - 1)
        lo, hi = max(k - 10, 0), min(k + 10, self.n - 1)
        x = self.x[k]
        y = script.keyed(spec.y_keys, tc)
        v_ego, _ = script.speed_accel(tc)
        a_obj = (self.v[hi] - self.v[lo]) / max((hi - lo) * DT, DT)
        y_next = script.keyed(spec.y_keys, tc + 0.1)
        x_next = self.x[min(k + 10, self.n - 1)]
        angle = math.degrees(math.atan2(y, max(x, 0.1)))
        angle_next = math.degrees(math.atan2(y_next, max(x_next, 0.1)))
        return ObstacleSample(
            spec,
            x,
            y,
            self.v[k] - v_ego,
            self.v[k],
            a_obj,
            angle,
            (angle_next - angle) / 0.1,
            self.moved[k],
        )


class Drive:
    """The whole recording: ``duration_s`` seconds of back-to-back scripted cycles."""

    def __init__(self, *, duration_s: float, track: str) -> None:
        if track not in TRACKS:
            raise ValueError(f"unknown track {track!r}; choose one of {', '.join(TRACKS)}")
        self.duration_s = duration_s
        n = math.ceil(duration_s / DT) + 3
        v: list[float] = []
        a: list[float] = []
        for i in range(n):
            vi, ai = script.speed_accel((i * DT) % script.CYCLE_S)
            v.append(vi)
            a.append(ai)
        s = [0.0]
        for i in range(1, n):
            s.append(s[-1] + (v[i - 1] + v[i]) / 2 * DT)
        self._v, self._a, self._s = v, a, s
        self.path = Path(TRACKS[track], self.distance(script.TURN_MID_T))
        self.obstacles = [_ObstacleTrack(spec) for spec in script.OBSTACLES]
        self._blinkers = [
            (self._time_at(t.s_start - BLINKER_LEAD_M), self._time_at(t.s_end + 3.0), t.direction)
            for t in self.path.turns
            if t.s_start < s[-1]
        ]

    # -- ego -------------------------------------------------------------------------------

    def _index(self, t: float) -> tuple[int, float]:
        f = t / DT
        i = min(max(int(f), 0), len(self._v) - 2)
        return i, f - i

    def speed(self, t: float) -> float:
        i, f = self._index(t)
        return self._v[i] + (self._v[i + 1] - self._v[i]) * f

    def accel(self, t: float) -> float:
        return self._a[self._index(t)[0]]

    def distance(self, t: float) -> float:
        i, f = self._index(t)
        return self._s[i] + (self._s[i + 1] - self._s[i]) * f

    def _time_at(self, s: float) -> float:
        return bisect_left(self._s, s) * DT

    def pose(self, t: float) -> Pose:
        return self.path.pose(self.distance(t))

    def path_curvature(self, t: float) -> float:
        """Road curvature (1/m, left-positive) smoothed over ±4 m, like a clothoid entry."""
        s = self.distance(t)
        before, after = self.path.pose(s - 4.0), self.path.pose(s + 4.0)
        dtheta = (after.theta - before.theta + math.pi) % (2 * math.pi) - math.pi
        return dtheta / 8.0

    def curvature(self, t: float) -> float:
        """Curvature actually driven: the road's plus the weaving inside the lane."""
        tc = t % script.CYCLE_S
        return self.path_curvature(t) + script.lateral_curvature(
            self.distance(t), tc, self.speed(t)
        )

    def lateral_offset(self, t: float) -> float:
        return script.lateral_offset(self.distance(t), t % script.CYCLE_S)

    def steering_deg(self, t: float) -> float:
        return math.degrees(math.atan(WHEELBASE_M * self.curvature(t))) * STEERING_RATIO

    def blinkers(self, t: float) -> tuple[bool, bool]:
        for t_on, t_off, direction in self._blinkers:
            if t_on <= t < t_off:
                lamp = (t - t_on) % BLINK_PERIOD_S < BLINK_ON_S
                return (lamp and direction > 0, lamp and direction < 0)
        return False, False

    def vehicle(self, t: float) -> VehicleState:
        tc = t % script.CYCLE_S
        v = self.speed(t)
        a = self.accel(t)
        kappa = self.curvature(t)
        standstill = v < 0.05
        braking = standstill or a < -0.25
        abs_active = script.ABS_WINDOW[0] <= tc < script.ABS_WINDOW[1]
        factors = [
            1 - kappa * TRACK_WIDTH_M / 2,
            1 + kappa * TRACK_WIDTH_M / 2,
            1 - kappa * TRACK_WIDTH_M / 2,
            1 + kappa * TRACK_WIDTH_M / 2,
        ]
        if abs_active:
            pulse = abs(math.sin(math.pi * (tc - script.ABS_WINDOW[0]) / 0.15))
            factors = [
                f * (1 - d * pulse) for f, d in zip(factors, (0.10, 0.09, 0.04, 0.035), strict=True)
            ]
        wheels = tuple(
            0.0 if standstill else max(0.0, v * 3.6 * f * (1 + e))
            for f, e in zip(factors, TYRE_ERROR, strict=True)
        )
        steer = self.steering_deg(t)
        steer_rate = abs(steer - self.steering_deg(t - 0.05)) / 0.05
        left, right = self.blinkers(t)
        wiper_switch = script.wipers_on(tc)
        blade = wiper_switch and (tc - script.WIPERS_ON_T) % WIPER_PERIOD_S < WIPER_BLADE_S
        noise = 0.04 * math.sin(t * 37.3) + 0.025 * math.sin(t * 91.1 + 0.4)
        if standstill:
            cyl = 12.0
        elif braking:
            cyl = max(3.0, -a * 14.5)
        else:
            cyl = 0.0
        return VehicleState(
            speed_kmh=v * 3.6,
            accel=a + (0.0 if standstill else noise),
            wheel_kmh=(wheels[0], wheels[1], wheels[2], wheels[3]),
            steering_deg=steer,
            steering_rate_dps=steer_rate,
            yaw_rate_dps=math.degrees(v * kappa) + (0.0 if standstill else noise),
            lat_accel=v * v * kappa + (0.0 if standstill else noise),
            braking=braking,
            cyl_pres_bar=cyl,
            abs_active=abs_active,
            standstill=standstill,
            blinker_left=left,
            blinker_right=right,
            wiper_switch=wiper_switch,
            wiper_blade=blade,
            low_beam=tc >= script.LOW_BEAM_ON_T,
            outside_temp_c=script.outside_temp_c(tc),
        )

    def obstacles_at(self, t: float) -> list[ObstacleSample]:
        tc = t % script.CYCLE_S
        out = []
        for track in self.obstacles:
            smp = track.sample(tc)
            if smp is not None:
                out.append(smp)
        return out
