"""What the Mobileye camera says in each burst, as physical values per DBC message.

:meth:`CameraModel.burst` returns the messages of one burst in the unit's real order
(0x700, 0x760, [0x720-0x726], 0x727, 0x669, 0x766-0x76F, 0x737, 0x738, then 0x739/0x73A/0x73B
per obstacle) together with the scripted events each message shows, so the caller can stamp
the events with the frame's time. The model is stateful (LDW frame counts, obstacle ages,
warning sound timers) and must see the bursts in time order.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Final

from hw_fixtures import script
from hw_fixtures.drive import Drive, ObstacleSample

LANE_HALF_WIDTH_M: Final = 1.75
NEXT_LANE_M: Final = 3.4
NO_LANE_C0_M: Final = 1.875
MAX_OBSTACLES: Final = 13
TRAFFIC_FIRST_ID: Final = 40  # full-load filler obstacles
IMAGE_LATENCY_MS: Final = 35

SOUND_LDW_LEFT, SOUND_LDW_RIGHT, SOUND_HW, SOUND_TSR, SOUND_UFCW, SOUND_FCW_PCW = 1, 2, 3, 4, 5, 6

Values = dict[str, Any]


@dataclass(slots=True)
class Mark:
    """A scripted event visible in one message of a burst."""

    kind: str
    key: tuple[int, str]  # (cycle, instance) - one expected event per key
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CameraMessage:
    name: str
    values: Values
    marks: list[Mark] = field(default_factory=list)


@dataclass(slots=True)
class _Timer:
    """Remembers when a condition started, for warnings whose sound lasts a fixed time."""

    since: float | None = None

    def update(self, active: bool, t: float) -> float | None:
        if not active:
            self.since = None
        elif self.since is None:
            self.since = t
        return self.since


class CameraModel:
    def __init__(self, drive: Drive, *, full_load: bool, rng: random.Random | None = None) -> None:
        self.drive = drive
        self.full_load = full_load
        self._rng = rng or random.Random(0)
        self._speed_held = 0
        self._speed_refresh_t = 0.0
        self._ldw_counts: dict[tuple[int, str], int] = {}
        self._ages: dict[tuple[int, int], int] = {}
        self._hw_timer = _Timer()
        self._tsr_timer = _Timer()
        self._ldw_active = False
        self._tsr_emitted: set[int] = set()
        self._sounded: set[tuple[int, str]] = set()

    # -- helpers ---------------------------------------------------------------------------

    def _ldw(self, cycle: int, side: str, tc: float, start: float) -> bool:
        key = (cycle, side)
        done = self._ldw_counts.get(key, 0)
        if tc >= start and done < script.LDW_FRAMES:
            self._ldw_counts[key] = done + 1
            return True
        return False

    def _age(self, cycle: int, obstacle_id: int) -> int:
        key = (cycle, obstacle_id)
        age = self._ages.get(key, 0) + 1
        self._ages[key] = age
        return age

    def _speed_echo(self, t: float, tc: float, kmh: float) -> int:
        """The 0x760 speed: whole km/h, refreshed every 0.4-0.5 s, and the scripted dropouts."""
        if t >= self._speed_refresh_t:
            self._speed_held = round(kmh)
            self._speed_refresh_t = t + self._rng.uniform(*script.CAMERA_SPEED_REFRESH_S)
        if any(t0 <= tc < t0 + length for t0, length in script.CAMERA_SPEED_DROPOUTS):
            return 0
        return self._speed_held

    # -- the burst ---------------------------------------------------------------------------

    def burst(self, t: float) -> list[CameraMessage]:
        drive = self.drive
        cycle = int(t // script.CYCLE_S)
        tc = t - cycle * script.CYCLE_S
        veh = drive.vehicle(t)
        speed = round(veh.speed_kmh)
        echo = self._speed_echo(t, tc, veh.speed_kmh)
        failsafe = script.in_window(script.FAILSAFE_WINDOW, tc)
        if speed > script.LDW_ON_KMH:
            self._ldw_active = True
        elif speed < script.LDW_OFF_KMH:
            self._ldw_active = False

        obstacles = [] if failsafe else drive.obstacles_at(t)
        obstacles.sort(key=lambda o: (o.spec.t0, o.spec.obstacle_id))
        if self.full_load:
            obstacles = obstacles[:MAX_OBSTACLES] + _traffic(t, MAX_OBSTACLES - len(obstacles))
        cipv = _cipv(obstacles)
        v = veh.speed_kmh / 3.6
        headway = 0.0
        if cipv is not None and v > 0.5:
            headway = cipv.x / v
        # Headway warning: configured threshold, speed-gated like the unit's HMW.
        hw_level = 0
        if cipv is not None:
            hw_level = 1
            if veh.speed_kmh >= script.HW_MIN_SPEED_KMH and headway <= script.HW_THRESHOLD_S:
                hw_level = 2

        # TSR: the sign is recognised once, held until the next intersection.
        limit_held = script.TSR_SIGN_T <= tc < script.SIGN_DROP_T
        tsr_level = 0
        if limit_held and speed > script.TSR_LIMIT_KMH:
            tsr_level = min(7, (speed - script.TSR_LIMIT_KMH - 1) // 5 + 1)

        marks: list[Mark] = []
        sound = 0
        suppressed = 0
        left_ldw = self._ldw(cycle, "ldw_left", tc, script.LDW_LEFT_T)
        right_ldw = self._ldw(cycle, "ldw_right", tc, script.LDW_RIGHT_T)
        if left_ldw:
            sound = SOUND_LDW_LEFT
            marks.append(
                Mark(
                    "ldw_left",
                    (cycle, "ldw_left"),
                    {"frames": script.LDW_FRAMES, "sound_type": SOUND_LDW_LEFT},
                )
            )
        if right_ldw:
            sound = SOUND_LDW_RIGHT
            marks.append(
                Mark(
                    "ldw_right",
                    (cycle, "ldw_right"),
                    {"frames": script.LDW_FRAMES, "sound_type": SOUND_LDW_RIGHT},
                )
            )
        hw_since = self._hw_timer.update(hw_level == 2, tc)
        if hw_since is not None:
            if tc - hw_since < script.WARNING_S:
                sound = SOUND_HW
            marks.append(
                Mark(
                    "headway_warning",
                    (cycle, f"hw@{hw_since:.3f}"),
                    {
                        "level": 2,
                        "threshold_s": script.HW_THRESHOLD_S,
                        "headway_s": round(headway, 2),
                        "sound_type": SOUND_HW,
                    },
                )
            )
        tsr_since = self._tsr_timer.update(tsr_level > 0, tc)
        if tsr_since is not None:
            if tc - tsr_since < script.WARNING_S:
                sound = SOUND_TSR
            marks.append(
                Mark(
                    "overspeed",
                    (cycle, f"overspeed@{tsr_since:.3f}"),
                    {
                        "limit_kmh": script.TSR_LIMIT_KMH,
                        "level": tsr_level,
                        "speed_kmh": speed,
                        "sound_type": SOUND_TSR,
                    },
                )
            )
        fcw = urban = pcw = False
        for window, kind in ((script.FCW_WINDOW, "fcw"), (script.UFCW_WINDOW, "urban_fcw")):
            if script.in_window(window, tc):
                fcw = True
                urban = kind == "urban_fcw"
                sound = SOUND_UFCW if urban else SOUND_FCW_PCW
                if self._first(cycle, kind):
                    suppressed = 1
                marks.append(Mark("fcw", (cycle, kind), {"urban": urban, "sound_type": sound}))
        if script.in_window(script.PCW_WINDOW, tc):
            pcw = True
            sound = SOUND_FCW_PCW
            if self._first(cycle, "pcw"):
                suppressed = 1
            marks.append(Mark("pcw", (cycle, "pcw"), {"sound_type": SOUND_FCW_PCW}))
        peds_dz = script.in_window(script.PEDS_DZ_WINDOW, tc)
        if peds_dz:
            marks.append(Mark("peds_in_dz", (cycle, "peds_in_dz"), {}))
        if failsafe:
            marks.append(
                Mark(
                    "camera_failsafe",
                    (cycle, "camera_failsafe"),
                    {"cause": "blur", "failsafe_bits": 2},
                )
            )

        msgs: list[CameraMessage] = []
        msgs.append(
            CameraMessage(
                "ME_Display_Warnings",
                {
                    "sound_type": sound,
                    "time_indicator": 0,
                    "sound_suppressed": suppressed,
                    "zero_speed": int(echo == 0),  # the real unit: exactly with 0x760 speed 0
                    "headway_valid": int(cipv is not None),
                    "headway_measurement": min(round(headway, 1), 9.9),
                    "error_valid": 1,
                    "error_code": 0,
                    "ldw_off": int(not self._ldw_active),
                    "left_ldw_on": int(left_ldw),
                    "right_ldw_on": int(right_ldw),
                    "fcw_on": int(fcw),
                    "left_crossing": 0,
                    "right_crossing": 0,
                    "maintenance": 0,
                    "failsafe": int(failsafe),
                    "peds_fcw": int(pcw),
                    "peds_in_dz": int(peds_dz),
                    "tamper_alert": 0,
                    "tsr_enabled": 1,
                    "tsr_warning_level": tsr_level,
                    "headway_warning_level": hw_level,
                    "hw_repeatable_enabled": 1,
                },
                marks,
            )
        )
        car_marks = []
        if veh.wiper_blade:
            car_marks.append(
                Mark("wipers_on", (cycle, "wipers_on"), {"switch_signal": "CF_Gway_WiperLowSw"})
            )
        msgs.append(
            CameraMessage(
                "ME_Car_Signals",
                {
                    "brakes": int(veh.braking),
                    "left_signal": int(veh.blinker_left),
                    "right_signal": int(veh.blinker_right),
                    "wipers": int(veh.wiper_blade),
                    "low_beam": int(veh.low_beam),
                    "high_beam": 0,
                    "wipers_available": 1,
                    "low_beam_available": 1,
                    "high_beam_available": 0,
                    "speed_available": 1,
                    "speed": echo,
                },
                car_marks,
            )
        )
        msgs.extend(self._tsr(cycle, tc))
        sign = script.TSR_SIGN_RAW if limit_held else 254
        tsr_marks = []
        if limit_held:
            tsr_marks.append(
                Mark(
                    "tsr_sign",
                    (cycle, "tsr_sign"),
                    {"sign_type": script.TSR_SIGN_RAW, "limit_kmh": script.TSR_LIMIT_KMH},
                )
            )
        msgs.append(
            CameraMessage(
                "ME_TSR_Vision_Only",
                {
                    "sign_type_d1": sign,
                    "supplementary_sign_type_d1": 0,
                    "sign_type_d2": 254,
                    "supplementary_sign_type_d2": 0,
                    "sign_type_d3": 254,
                    "supplementary_sign_type_d3": 0,
                    "sign_type_d4": 254,
                    "supplementary_sign_type_d4": 0,
                },
                tsr_marks,
            )
        )
        msgs.extend(self._lanes(t, tc, veh.accel, failsafe))
        msgs.extend(
            self._obstacles(
                t=t,
                cycle=cycle,
                obstacles=obstacles,
                cipv=cipv,
                failsafe=failsafe,
                speed_kmh=veh.speed_kmh,
            )
        )
        return msgs

    def _first(self, cycle: int, kind: str) -> bool:
        """True on the first burst of a warning's sound (the unit sets bit 7 then)."""
        key = (cycle, kind)
        if key in self._sounded:
            return False
        self._sounded.add(key)
        return True

    # -- TSR -----------------------------------------------------------------------------------

    def _tsr(self, cycle: int, tc: float) -> list[CameraMessage]:
        new_sign = tc >= script.TSR_SIGN_T and cycle not in self._tsr_emitted
        if new_sign:
            self._tsr_emitted.add(cycle)
        slots: list[Values] = []
        if new_sign:
            slots.append(
                {
                    "vision_only_sign_type": script.TSR_SIGN_RAW,
                    "supplementary_sign_type": 0,
                    "sign_position_x": 9.5,
                    "sign_position_y": 4.5,
                    "sign_position_z": 1.5,
                    "filter_type": 0,
                }
            )
        if self.full_load:
            while len(slots) < 7:  # every slot used: invalid signs, no 254 terminator
                slots.append(
                    {
                        "vision_only_sign_type": 255,
                        "supplementary_sign_type": 255,
                        "sign_position_x": 0.0,
                        "sign_position_y": 0.0,
                        "sign_position_z": 0.0,
                        "filter_type": 0,
                    }
                )
        elif new_sign:
            slots.append(
                {
                    "vision_only_sign_type": 254,
                    "supplementary_sign_type": 0,
                    "sign_position_x": 0.0,
                    "sign_position_y": 0.0,
                    "sign_position_z": 0.0,
                    "filter_type": 0,
                }
            )
        out = []
        for i, vals in enumerate(slots):
            marks = []
            if new_sign and i == 0:
                marks.append(Mark("tsr_detection", (cycle, "tsr_sign"), {}))
            out.append(CameraMessage(f"ME_TSR_{i + 1}", vals, marks))
        return out

    # -- lanes ---------------------------------------------------------------------------------

    def _lanes(self, t: float, tc: float, accel: float, failsafe: bool) -> list[CameraMessage]:
        drive = self.drive
        q = 0 if failsafe else script.lane_quality(tc)
        v = max(drive.speed(t), 0.1)
        offset = drive.lateral_offset(t)
        dt = 0.05
        offset_rate = (drive.lateral_offset(t + dt) - drive.lateral_offset(t - dt)) / (2 * dt)
        yaw = offset_rate / v if v > 1.0 else 0.0  # host heading relative to the lanes, right +
        c1 = -yaw
        c2 = max(-0.02, min(0.02, -drive.path_curvature(t) / 2))
        half = LANE_HALF_WIDTH_M + 0.05 * math.sin(drive.distance(t) / 90.0)
        jongno = tc >= script.SIGN_DROP_T
        left_type, right_type = (4 if jongno else 0), 0
        if q == 0:
            c0l, c0r, c1, c2 = -NO_LANE_C0_M, NO_LANE_C0_M, 0.0, 0.0
            left_type = right_type = 2
            view = 0.0
        else:
            c0l, c0r = -half - offset, half - offset
            view = {1: 12.0, 2: 35.0, 3: 62.0}[q] + 3.0 * math.sin(t / 3.7)
        width_l = 0.0 if q == 0 else (0.20 if left_type == 4 else 0.15)
        width_r = 0.0 if q == 0 else 0.15
        available = self._ldw_active and q >= 2

        def lane_a(lane_type: int, quality: int, c0: float, width: float) -> Values:
            return {
                "lane_type": lane_type,
                "quality": quality,
                "model_degree": 3,
                "position_c0": c0,
                "curvature_c2": c2,
                "curvature_derivative_c3": 0.0,
                "marking_width": width,
            }

        def lane_b(c1v: float, rng: float) -> Values:
            return {"heading_c1": c1v, "view_range": max(0.0, rng), "view_range_availability": 1}

        next_type = 1 if q >= 2 else 2
        ref_ok = q >= 2
        ref_dist = min(v * 1.0, 120.0)
        ref_pos = (c0l + c0r) / 2 + c1 * ref_dist + c2 * ref_dist**2
        tracked = q >= 2
        return [
            CameraMessage(
                "ME_Aftermarket_Lane",
                {
                    "lane_confidence_left": q,
                    "ldw_available_left": int(available),
                    "lane_type_left": left_type,
                    "distance_to_left_lane": c0l,
                    "lane_confidence_right": q,
                    "ldw_available_right": int(available),
                    "lane_type_right": right_type,
                    "distance_to_right_lane": c0r,
                },
            ),
            CameraMessage("ME_LKA_Left_Lane_A", lane_a(left_type, q, c0l, width_l)),
            CameraMessage("ME_LKA_Left_Lane_B", lane_b(c1, view)),
            CameraMessage("ME_LKA_Right_Lane_A", lane_a(right_type, q, c0r, width_r)),
            CameraMessage("ME_LKA_Right_Lane_B", lane_b(c1, view)),
            CameraMessage(
                "ME_LKA_Reference_Points",
                {
                    "ref_point_1_position": ref_pos if ref_ok else 0.0,
                    "ref_point_1_distance": ref_dist if ref_ok else 0.0,
                    "ref_point_1_validity": int(ref_ok),
                    "ref_point_2_position": -0x7FFF / 256,
                    "ref_point_2_distance": 0.0,
                    "ref_point_2_validity": 0,
                },
            ),
            CameraMessage("ME_LKA_Num_Next_Lanes", {"num_next_lane_markers": 2}),
            CameraMessage(
                "ME_LKA_Next_Left_Lane_A_0",
                lane_a(next_type, 0, c0l - NEXT_LANE_M, 0.13 if q else 0.0),
            ),
            CameraMessage("ME_LKA_Next_Left_Lane_B_0", lane_b(c1, 0.0)),
            CameraMessage(
                "ME_LKA_Next_Right_Lane_A_0",
                lane_a(next_type, 0, c0r + NEXT_LANE_M, 0.13 if q else 0.0),
            ),
            CameraMessage("ME_LKA_Next_Right_Lane_B_0", lane_b(c1, 0.0)),
            CameraMessage(
                "ME_Lane",
                {
                    "lane_curvature": c2 if tracked else "INVALID",
                    "lane_heading": max(-1.0, min(1.0, c1)) if tracked else "INVALID",
                    "construction_area": 0,
                    "right_ldw_availability": int(available),
                    "left_ldw_availability": int(available),
                    "yaw_angle": yaw if tracked else 0.0,
                    "pitch_angle": -0.000153 - 0.0008 * accel / script.G,
                },
            ),
        ]

    # -- obstacles -------------------------------------------------------------------------------

    def _obstacles(
        self,
        *,
        t: float,
        cycle: int,
        obstacles: list[ObstacleSample],
        cipv: ObstacleSample | None,
        failsafe: bool,
        speed_kmh: float,
    ) -> list[CameraMessage]:
        tc = t - cycle * script.CYCLE_S
        stopped = speed_kmh < 0.5
        go = 15
        if stopped:
            go = 1 if cipv is not None and cipv.v_obj > 0.5 else 0
        cut_in_left = any(o.spec.kind == script.BIKE and -3.5 < o.y < 0 for o in obstacles)
        status = CameraMessage(
            "ME_Obstacle_Status",
            {
                "num_obstacles": len(obstacles),
                "timestamp": (int(t * 1000) - IMAGE_LATENCY_MS) & 0xFF,
                "application_version": 0,
                "active_version_number_section": 2,
                "left_close_range_cut_in": int(cut_in_left),
                "right_close_range_cut_in": 0,
                "go": go,
                "protocol_version": 3,
                "close_car": int(cipv is not None and cipv.x < 8.0),
                "failsafe": 2 if failsafe else 0,
            },
        )
        out = [status]
        for i, o in enumerate(obstacles):
            spec = o.spec
            age = self._age(cycle, spec.obstacle_id)
            vehicle = spec.kind in (script.VEHICLE, script.TRUCK)
            traffic = spec.obstacle_id >= TRAFFIC_FIRST_ID
            y_next = o.y if traffic else script.keyed(spec.y_keys, tc + 0.2)
            vy = (y_next - o.y) / 0.2
            if spec.in_path and abs(o.y) < 1.5:
                cut = 1
            elif abs(o.y) < 3.0 and o.y * vy < 0 and abs(vy) > 0.2:
                cut = 3
            elif abs(o.y) < 3.0 and o.y * vy > 0 and abs(vy) > 0.2:
                cut = 4
            else:
                cut = 0
            blinker = 1 if vehicle else 0
            for b0, b1, info in spec.blinker:
                if b0 <= tc < b1:
                    blinker = info
            if spec.parked:
                state = 5
            elif spec.kind == script.PEDESTRIAN or o.v_obj > 0.3:
                state = 3
            else:
                state = 2 if o.moved else 1
            brake = vehicle and not spec.parked and (o.a_obj < -1.0 or state == 2)
            lane = 1 if abs(o.y) < 1.6 else (2 if abs(o.y) < 5.5 else 0)
            out.append(
                CameraMessage(
                    f"ME_Obstacle_A_{i}",
                    {
                        "obstacle_id": spec.obstacle_id,
                        "obstacle_pos_x": max(0.0, min(o.x, 255.0)),
                        "obstacle_pos_y": max(-31.9, min(o.y, 31.9)),
                        "blinker_info": blinker,
                        "cut_in_and_out": cut,
                        "obstacle_rel_vel_x": max(-127.9, min(o.rel_vx, 127.9)),
                        "obstacle_type": spec.kind,
                        "obstacle_status": state,
                        "obstacle_brake_lights": int(brake),
                        "obstacle_valid": 1 if age == 1 else 2,
                    },
                )
            )
            out.append(
                CameraMessage(
                    f"ME_Obstacle_B_{i}",
                    {
                        "obstacle_length": "INVALID",
                        "obstacle_width": spec.width_m,
                        "obstacle_age": min(age, 254),
                        "obstacle_lane": lane,
                        "cipv_flag": int(o is cipv),
                        "radar_pos_x": "INVALID",
                        "radar_vel_x": "INVALID",
                        "radar_match_confidence": 0,
                        "matched_radar_id": "INVALID",
                    },
                )
            )
            out.append(
                CameraMessage(
                    f"ME_Obstacle_C_{i}",
                    {
                        "obstacle_angle_rate": max(-327.0, min(o.angle_rate_dps, 327.0)),
                        "obstacle_scale_change": "INVALID",
                        "object_accel_x": max(-14.9, min(o.a_obj, 14.9)),
                        "obstacle_replaced": 0,
                        "obstacle_angle": o.angle_deg,
                    },
                )
            )
        return out


def _cipv(obstacles: list[ObstacleSample]) -> ObstacleSample | None:
    best = None
    for o in obstacles:
        if o.spec.in_path and abs(o.y) < 1.5 and (best is None or o.x < best.x):
            best = o
    return best


_TRAFFIC_SPECS: Final = tuple(
    script.ObstacleSpec(
        TRAFFIC_FIRST_ID + k,
        script.TRUCK if k % 4 == 3 else script.VEHICLE,
        0.0,
        script.CYCLE_S,
        "x",
        ((0.0, 0.0),),
        ((0.0, 0.0),),
        width_m=2.4 if k % 4 == 3 else 1.8,
    )
    for k in range(MAX_OBSTACLES)
)


def _traffic(t: float, count: int) -> list[ObstacleSample]:
    """Full-load filler: other traffic in the neighbouring lanes, never in the ego path."""
    out = []
    for k in range(max(count, 0)):
        spec = _TRAFFIC_SPECS[k]
        side = -1 if k % 2 else 1
        y = side * (3.5 if k % 4 < 2 else 7.0)
        phase = 0.21 * t + k
        x = 12.0 + 7.5 * k + 2.0 * math.sin(phase)
        rel = 0.42 * math.cos(phase)
        a = -0.088 * math.sin(phase)
        angle = math.degrees(math.atan2(y, x))
        out.append(ObstacleSample(spec, x, y, rel, 8.0 + rel, a, angle, 0.0, True))
    return out
