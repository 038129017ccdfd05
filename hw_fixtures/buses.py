"""The two CAN buses as time-ordered frame streams.

Frames are plain tuples ``(timestamp_us, channel, can_id, data)`` so that a ten-minute
full-load recording (millions of frames) streams in bounded memory. Every payload of a DBC
message is built by encoding physical values with cantools through the fixture DBCs.

Timing model (500 kbit/s): a frame's timestamp is the end of its transmission, as SocketCAN
stamps received frames; frames on one bus never overlap. A frame lasts
47 + 8·n bits plus an estimate of stuff bits, 2 µs per bit (≈ 240 µs for 8 bytes, 170 µs for
4, as on the real camera bus).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cantools

from edge_agent import decode
from edge_agent.decode import bundled_dbc
from hw_fixtures import script
from hw_fixtures.camera import CameraModel
from hw_fixtures.drive import Drive, VehicleState
from hw_fixtures.events import EventRecorder

# The fixtures encode with the very DBCs the agent ships, so the two cannot drift apart.
MOBILEYE_DBC: Final = bundled_dbc(decode.MOBILEYE_DBC)
VEHICLE_DBC: Final = bundled_dbc(decode.VEHICLE_DBC)

CAMERA: Final = 0  # channel can0
VEHICLE: Final = 1  # channel can1
CHANNEL_NAMES: Final = ("can0", "can1")

# The real unit sends these shorter than their documented length.
SHORT_DLC: Final = {0x738: 6, 0x767: 4, 0x769: 4, 0x76D: 4, 0x76F: 4}

Frame = tuple[int, int, int, bytes]


def frame_duration_us(data: bytes) -> int:
    """Transmission time of a classic 11-bit data frame at 500 kbit/s, in µs."""
    n = len(data)
    stuff = (34 + 8 * n) // 10 + (data.count(0) + data.count(255)) // 2
    return 2 * (47 + 8 * n + stuff)


class Codec:
    """Encodes physical values through one DBC."""

    def __init__(self, path: Path) -> None:
        db = cantools.database.can.Database()
        db.add_dbc_file(str(path))
        self._by_name: dict[str, Any] = {m.name: m for m in db.messages}

    def encode(self, name: str, values: dict[str, Any]) -> tuple[int, bytes]:
        message = self._by_name[name]
        data = bytes(message.encode(values, scaling=True, padding=False, strict=True))
        return message.frame_id, data

    def frame_id(self, name: str) -> int:
        return int(self._by_name[name].frame_id)


# --- camera bus ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CameraTiming:
    """Burst cadence: 75-81 ms with jitter, plus the anomalies seen on the real unit."""

    base_ms: float
    jitter_ms: float = 2.5


def camera_frames(
    drive: Drive,
    model: CameraModel,
    codec: Codec,
    *,
    start_us: int,
    rng: random.Random,
    recorder: EventRecorder,
    anomalies: list[dict[str, Any]],
) -> Iterator[Frame]:
    timing = CameraTiming(base_ms=76.0 + 4.0 * rng.random())
    end_us = start_us + round(drive.duration_s * 1e6)
    burst_us = start_us + 20_000 + int(rng.random() * 30_000)
    late: set[int] = set()
    back_to_back: set[int] = set()
    while burst_us < end_us:
        t = (burst_us - start_us) / 1e6
        ts = burst_us
        for msg in model.burst(t):
            can_id, data = codec.encode(msg.name, msg.values)
            short = SHORT_DLC.get(can_id)
            if short is not None:
                data = data[:short]
            elif can_id == 0x760:
                data = data[:1] + bytes([data[1] | 0x07]) + data[2:]  # reserved bits 8-10 set
            ts += frame_duration_us(data)
            for mark in msg.marks:
                recorder.mark(mark.kind, mark.key, ts, f"can0 0x{can_id:03X}", mark.attrs)
            yield ts, CAMERA, can_id, data
        cycle = int(t // script.CYCLE_S)
        tc = t - cycle * script.CYCLE_S
        interval_us = round((timing.base_ms + rng.uniform(-1, 1) * timing.jitter_ms) * 1000)
        if tc >= script.LATE_BURST_T and cycle not in late:
            late.add(cycle)
            interval_us += 110_000 + int(rng.random() * 100_000)
            anomalies.append(
                {
                    "type": "late_burst",
                    "after_t_s": round(t, 6),
                    "gap_ms": round(interval_us / 1000, 3),
                }
            )
        elif tc >= script.BACK_TO_BACK_T and cycle not in back_to_back:
            back_to_back.add(cycle)
            interval_us = ts - burst_us + 300
            anomalies.append(
                {
                    "type": "back_to_back_burst",
                    "after_t_s": round(t, 6),
                    "gap_ms": round(interval_us / 1000, 3),
                }
            )
        burst_us += interval_us


# --- vehicle bus ----------------------------------------------------------------------------

Builder = Callable[[float, int], bytes]


@dataclass(frozen=True, slots=True)
class Periodic:
    can_id: int
    period_us: int
    phase_us: int
    build: Builder


class VehicleEncoder:
    """Builds the taxi's own CAN messages from the drive, one physical state per 10 ms."""

    def __init__(self, drive: Drive, codec: Codec, recorder: EventRecorder) -> None:
        self.drive = drive
        self.codec = codec
        self.recorder = recorder
        self._tick = -1
        self._state: VehicleState | None = None
        # Events shown by the frame being built; stamped once the bus has timed the frame.
        self.pending: list[tuple[str, tuple[int, str], str, dict[str, Any]]] = []

    def state(self, t: float) -> VehicleState:
        tick = int(t * 100)
        if tick != self._tick or self._state is None:
            self._tick = tick
            self._state = self.drive.vehicle(tick / 100)
        return self._state

    def _mark(self, kind: str, t: float, can_id: int, attrs: dict[str, Any]) -> None:
        cycle = int(t // script.CYCLE_S)
        key = "wipers_on" if kind == "wipers_switch" else kind
        self.pending.append((kind, (cycle, key), f"can1 0x{can_id:03X}", attrs))

    def builders(self) -> dict[str, Builder]:
        enc = self.codec.encode

        def whl_spd11(t: float, k: int) -> bytes:
            s = self.state(t)
            tc = t % script.CYCLE_S
            if script.HARSH_BRAKE_T <= tc < script.HARSH_BRAKE_T + script.HARSH_BRAKE_S:
                self._mark(
                    "harsh_braking",
                    t,
                    0x386,
                    {
                        "decel_g": script.HARSH_BRAKE_G,
                        "duration_s": script.HARSH_BRAKE_S,
                        "from_kmh": 44.0,
                        "to_kmh": round(
                            script.speed_accel(script.HARSH_BRAKE_T + script.HARSH_BRAKE_S)[0]
                            * 3.6,
                            2,
                        ),
                        "abs_active": True,
                    },
                )
            fl, fr, rl, rr = s.wheel_kmh
            return enc(
                "WHL_SPD11",
                {
                    "WHL_SPD_FL": fl,
                    "WHL_SPD_FR": fr,
                    "WHL_SPD_RL": rl,
                    "WHL_SPD_RR": rr,
                    "WHL_SPD_AliveCounter_LSB": k & 3,
                    "WHL_SPD_AliveCounter_MSB": (k >> 2) & 3,
                    "WHL_SPD_Checksum_LSB": 0,
                    "WHL_SPD_Checksum_MSB": 0,
                },
            )[1]

        def sas11(t: float, k: int) -> bytes:
            s = self.state(t)
            return enc(
                "SAS11",
                {
                    "SAS_Angle": max(-3276.0, min(s.steering_deg, 3276.0)),
                    "SAS_Speed": min(s.steering_rate_dps, 1016.0),
                    "SAS_Stat": 0,
                    "MsgCount": k & 15,
                    "CheckSum": 0,
                },
            )[1]

        def esp12(t: float, k: int) -> bytes:
            s = self.state(t)
            return enc(
                "ESP12",
                {
                    "LAT_ACCEL": _clip(s.lat_accel, 10.2),
                    "LAT_ACCEL_STAT": 1,
                    "LAT_ACCEL_DIAG": 0,
                    "LONG_ACCEL": _clip(s.accel, 10.2),
                    "LONG_ACCEL_STAT": 1,
                    "LONG_ACCEL_DIAG": 0,
                    "CYL_PRES": min(s.cyl_pres_bar, 409.0),
                    "CYL_PRES_STAT": 1,
                    "CYL_PRESS_DIAG": 0,
                    "YAW_RATE": _clip(s.yaw_rate_dps, 40.9),
                    "YAW_RATE_STAT": 1,
                    "YAW_RATE_DIAG": 0,
                },
            )[1]

        def tcs13(t: float, k: int) -> bytes:
            s = self.state(t)
            return enc(
                "TCS13",
                {
                    "aBasis": 0.0,
                    "BrakeLight": int(s.braking),
                    "DriverOverride": 2 if s.braking else 0,
                    "StandStill": int(s.standstill),
                    "PBRAKE_ACT": 0,
                    "DriverBraking": int(s.braking),
                },
            )[1]

        def tcs11(t: float, k: int) -> bytes:
            s = self.state(t)
            flags = dict.fromkeys(
                (
                    "TCS_REQ",
                    "TCS_PAS",
                    "ABS_DIAG",
                    "ABS_DEF",
                    "TCS_DEF",
                    "TCS_CTL",
                    "EBD_DEF",
                    "ESP_PAS",
                    "ESP_DEF",
                    "ESP_CTL",
                    "HAC_CTL",
                ),
                0,
            )
            flags["ABS_ACT"] = int(s.abs_active)
            return enc("TCS11", flags)[1]

        def cgw1(t: float, k: int) -> bytes:
            s = self.state(t)
            if s.wiper_switch:
                self._mark("wipers_switch", t, 0x541, {})
            return enc(
                "CGW1",
                {
                    "CF_Gway_IGNSw": 0,
                    "CF_Gway_DrvDrSw": 0,
                    "CF_Gway_DrvSeatBeltSw": 1,
                    "CF_Gway_TrunkTgSw": 0,
                    "CF_Gway_AstSeatBeltSw": 0,
                    "CF_Gway_TurnSigLh": int(s.blinker_left),
                    "CF_Gway_WiperIntT": 0,
                    "CF_Gway_WiperIntSw": 0,
                    "CF_Gway_WiperLowSw": int(s.wiper_switch),
                    "CF_Gway_WiperHighSw": 0,
                    "CF_Gway_WiperAutoSw": 0,
                    "CF_Gway_RainSnsState": 0,
                    "CF_Gway_HeadLampLow": int(s.low_beam),
                    "CF_Gway_HeadLampHigh": 0,
                    "CF_Gway_HazardSw": 0,
                    "CF_Gway_AstDrSw": 0,
                    "CF_Gway_Frt_Fog_Act": 0,
                    "CF_Gway_WiperMistSw": 0,
                    "CF_Gway_ParkBrakeSw": 0,
                    "CF_Gway_TurnSigRh": int(s.blinker_right),
                },
            )[1]

        def clu11(t: float, k: int) -> bytes:
            kmh = self.state(t).speed_kmh
            vanz = int(kmh * 2) / 2
            return enc(
                "CLU11",
                {
                    "CF_Clu_VanzDecimal": min(int((kmh - vanz) * 8), 3) / 8,
                    "CF_Clu_Vanz": vanz,
                    "CF_Clu_SPEED_UNIT": 0,
                },
            )[1]

        def fatc11(t: float, k: int) -> bytes:
            temp = round(self.state(t).outside_temp_c * 2) / 2
            return enc("FATC11", {"CR_Fatc_OutTemp": temp, "CR_Fatc_OutTempSns": temp + 0.5})[1]

        return {
            "WHL_SPD11": whl_spd11,
            "SAS11": sas11,
            "ESP12": esp12,
            "TCS13": tcs13,
            "TCS11": tcs11,
            "CGW1": cgw1,
            "CLU11": clu11,
            "FATC11": fatc11,
        }


def _clip(v: float, limit: float) -> float:
    return max(-limit, min(v, limit))


# (name, period ms) - the rates openpilot expects from these ECUs.
VEHICLE_RATES: Final = (
    ("WHL_SPD11", 20),
    ("SAS11", 10),
    ("ESP12", 10),
    ("TCS13", 20),
    ("TCS11", 10),
    ("CGW1", 100),
    ("CLU11", 20),
    ("FATC11", 1000),
)
# Other ECUs on the same bus that the DBC does not describe: (id, period ms, length).
OTHER_ECUS: Final = ((0x164, 20, 4), (0x4B0, 50, 8), (0x5A0, 100, 8))
FULL_LOAD_FRAMES_PER_S: Final = 3700


def opaque_builder(length: int, rng: random.Random) -> Builder:
    """A payload we do not decode: fixed bytes with a rolling counter in the last byte."""
    base = bytes(rng.randrange(256) for _ in range(length))
    head, last = base[:-1], base[-1] & 0xF0

    def build(t: float, k: int) -> bytes:
        return head + bytes((last | (k & 0x0F),))

    return build


def filler_ids(rng: random.Random, count: int, taken: set[int]) -> list[int]:
    """Ids for full-load filler ECUs: none in either DBC, none in the camera's 0x600-0x7FF."""
    pool = [i for i in range(0x080, 0x600) if i not in taken]
    return sorted(rng.sample(pool, count))


def vehicle_periodics(
    encoder: VehicleEncoder, codec: Codec, rng: random.Random, *, full_load: bool
) -> list[Periodic]:
    builders = encoder.builders()
    out: list[Periodic] = []
    for name, period_ms in VEHICLE_RATES:
        period = period_ms * 1000
        out.append(Periodic(codec.frame_id(name), period, rng.randrange(period), builders[name]))
    for can_id, period_ms, length in OTHER_ECUS:
        period = period_ms * 1000
        out.append(Periodic(can_id, period, rng.randrange(period), opaque_builder(length, rng)))
    if full_load:
        rate = sum(1_000_000 // p.period_us for p in out)
        missing = FULL_LOAD_FRAMES_PER_S - rate
        n100 = missing // 100 - 8
        n50 = (missing - 100 * n100) // 50
        taken = {p.can_id for p in out}
        ids = filler_ids(rng, n100 + n50, taken)
        for j, can_id in enumerate(ids):
            period = 10_000 if j < n100 else 20_000
            out.append(Periodic(can_id, period, rng.randrange(period), opaque_builder(8, rng)))
    out.sort(key=lambda p: p.can_id)  # ties on the bus go to the lower id, as in arbitration
    return out


def vehicle_frames(
    periodics: list[Periodic],
    encoder: VehicleEncoder,
    *,
    start_us: int,
    duration_s: float,
    rng: random.Random,
) -> Iterator[Frame]:
    end_us = start_us + round(duration_s * 1e6)
    heap: list[tuple[int, int, int]] = []
    for idx, p in enumerate(periodics):
        heapq.heappush(heap, (start_us + p.phase_us, idx, 0))
    bus_free = 0
    jitter = rng.random
    pop, push = heapq.heappop, heapq.heappush
    recorder, pending = encoder.recorder, encoder.pending
    while heap:
        due, idx, k = pop(heap)
        if due >= end_us:
            continue
        p = periodics[idx]
        data = p.build((due - start_us) / 1e6, k)
        ts = max(due, bus_free) + frame_duration_us(data)
        bus_free = ts
        if pending:
            for kind, key, source, attrs in pending:
                recorder.mark(kind, key, ts, source, attrs)
            pending.clear()
        yield ts, VEHICLE, p.can_id, data
        nxt = start_us + p.phase_us + (k + 1) * p.period_us + int((jitter() - 0.5) * 100)
        push(heap, (nxt, idx, k + 1))


def merged(*streams: Iterator[Frame]) -> Iterator[Frame]:
    """All buses in time order (ties: lower channel first)."""
    return heapq.merge(*streams)
