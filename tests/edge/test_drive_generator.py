"""The generated drive: deterministic, readable by python-can, realistic in the ways we rely on."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import can
import cantools
import pytest

from edge_agent.decode import bundled_dbc
from hw_fixtures.generate import DEFAULT_OUT, FILE_NAMES, START_EPOCH_S, generate_drive

SCRIPTED_TYPES = {
    "fcw", "pcw", "peds_in_dz", "ldw_left", "ldw_right", "headway_warning", "tsr_sign",
    "overspeed", "wipers_on", "harsh_braking", "camera_failsafe",
}  # fmt: skip
CAMERA_SHORT = {0x738: 6, 0x767: 4, 0x769: 4, 0x76D: 4, 0x76F: 4}
Frames = list[tuple[float, Any, int, bytes]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], dict[str, Path]]:
    first = generate_drive(tmp_path_factory.mktemp("first"))
    second = generate_drive(tmp_path_factory.mktemp("second"))
    return first, second


@pytest.fixture(scope="module")
def paths(runs: tuple[dict[str, Path], dict[str, Path]]) -> dict[str, Path]:
    return runs[0]


@pytest.fixture(scope="module")
def expected(paths: dict[str, Path]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(paths["expected"].read_text(encoding="utf-8"))
    return data


def read(path: Path) -> Frames:
    return [
        (m.timestamp, m.channel, m.arbitration_id, bytes(m.data))
        for m in can.LogReader(str(path))
        if not m.is_error_frame
    ]


@pytest.fixture(scope="module")
def log_frames(paths: dict[str, Path]) -> Frames:
    return read(paths["log"])


def test_outputs_are_byte_identical_between_runs_and_to_the_committed_files(
    runs: tuple[dict[str, Path], dict[str, Path]],
) -> None:
    first, second = runs
    assert set(first) == {"log", "asc", "blf", "nmea", "expected"}
    for kind, path in first.items():
        assert path.name == FILE_NAMES[kind]
        data = path.read_bytes()
        assert data == second[kind].read_bytes(), f"{path.name} differs between runs"
        committed = DEFAULT_OUT / path.name
        assert committed.exists(), f"{committed} missing: run python -m hw_fixtures.generate"
        assert data == committed.read_bytes(), (
            f"{committed} is stale: run python -m hw_fixtures.generate"
        )


def test_committed_outputs_stay_small() -> None:
    total = sum((DEFAULT_OUT / name).stat().st_size for name in FILE_NAMES.values())
    assert total < 8_000_000


def test_log_matches_python_can_writer(paths: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "rewritten.log"
    with can.CanutilsLogWriter(out) as writer:
        for msg in can.LogReader(str(paths["log"])):
            writer.on_message_received(msg)
    assert out.read_bytes() == paths["log"].read_bytes()
    first = paths["log"].read_text(encoding="ascii").splitlines()[0]
    assert first.startswith(f"({START_EPOCH_S}.")


def test_all_formats_read_back_the_same_frames(
    paths: dict[str, Path], log_frames: Frames, expected: dict[str, Any]
) -> None:
    asc = read(paths["asc"])
    blf = read(paths["blf"])
    counts = expected["frame_counts"]
    assert len(log_frames) == len(asc) == len(blf) == counts["total"]
    # channel values as python-can returns them: names from .log, 0-based ints from ASC/BLF
    assert Counter(f[1] for f in log_frames) == {"can0": counts["can0"], "can1": counts["can1"]}
    assert Counter(f[1] for f in asc) == {0: counts["can0"], 1: counts["can1"]}
    assert Counter(f[1] for f in blf) == {0: counts["can0"], 1: counts["can1"]}
    channel_of = {"can0": 0, "can1": 1}
    t0 = log_frames[0][0]
    for a, b, c in zip(log_frames, asc, blf, strict=True):
        assert (channel_of[a[1]], a[2], a[3]) == (b[1], b[2], b[3]) == (c[1], c[2], c[3])
        assert abs(c[0] - a[0]) < 2e-6  # BLF keeps absolute time
        assert abs(b[0] - (a[0] - t0)) < 2e-6  # ASC reads back relative to the first frame


def test_camera_burst_cadence(log_frames: Frames, expected: dict[str, Any]) -> None:
    stamps = [f[0] for f in log_frames if f[1] == "can0" and f[2] == 0x700]
    gaps = [(b - a) * 1000 for a, b in pairwise(stamps)]
    assert 75.0 <= statistics.median(gaps) <= 81.0
    outliers = [g for g in gaps if not 66.0 <= g <= 100.0]
    # the only outliers are the scripted late and back-to-back bursts
    assert sorted(round(g, 3) for g in outliers) == sorted(
        a["gap_ms"] for a in expected["camera_anomalies"]
    )
    assert len(outliers) <= 0.01 * len(gaps)
    assert max(gaps) < 300.0


def test_burst_order_and_short_frames(log_frames: Frames) -> None:
    camera = [f for f in log_frames if f[1] == "can0"]
    dlc = {(f[2], len(f[3])) for f in camera}
    for can_id, length in CAMERA_SHORT.items():
        assert (can_id, length) in dlc
    assert all(len(f[3]) == CAMERA_SHORT.get(f[2], 8) for f in camera)
    # one burst: 0x700, 0x760, 0x727, 0x669, 0x766..0x76F, 0x737, 0x738, obstacles
    start = next(i for i, f in enumerate(camera) if f[2] == 0x700 and f[0] > camera[0][0] + 25)
    end = next(i for i in range(start + 1, len(camera)) if camera[i][2] == 0x700)
    ids = [f[2] for f in camera[start:end]]
    head = [0x700, 0x760, 0x727, 0x669, *range(0x766, 0x770), 0x737, 0x738]
    assert ids[: len(head)] == head
    tail = ids[len(head) :]
    assert tail == [0x739 + k for k in range(len(tail))]
    assert len(tail) % 3 == 0
    span_ms = (camera[end - 1][0] - camera[start][0]) * 1000
    assert 2.0 < span_ms < 8.0


def test_vehicle_rates(log_frames: Frames, expected: dict[str, Any]) -> None:
    duration = expected["duration_s"]
    rate = Counter(f[2] for f in log_frames if f[1] == "can1")
    nominal = {0x386: 50, 0x2B0: 100, 0x220: 100, 0x394: 50, 0x153: 100, 0x541: 10, 0x4F1: 50}
    for can_id, hz in nominal.items():
        assert rate[can_id] / duration == pytest.approx(hz, rel=0.02), hex(can_id)
    assert rate[0x383] in (int(duration), int(duration) + 1)
    assert rate[0x5A0] / duration == pytest.approx(10, rel=0.02)  # an ECU outside the DBC


def test_events_are_scripted_and_well_separated(expected: dict[str, Any]) -> None:
    events = expected["events"]
    assert {e["type"] for e in events} == SCRIPTED_TYPES
    fcws = [e for e in events if e["type"] == "fcw"]
    assert sorted(e["attrs"]["urban"] for e in fcws) == [False, True]
    # pedestrian-in-danger-zone and PCW are one scripted situation; all others >= 4 s apart
    starts = sorted(e["t_s"] for e in events if e["type"] != "peds_in_dz")
    assert min(b - a for a, b in pairwise(starts)) >= 4.0
    start = datetime.fromisoformat(expected["start"].replace("Z", "+00:00"))
    assert start.timestamp() == START_EPOCH_S
    for e in events:
        t = datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp()
        assert t - START_EPOCH_S == pytest.approx(e["t_s"], abs=0.001)
    assert 90.0 <= expected["duration_s"] <= 120.0


def _decoded(log_frames: Frames, channel: str, name: str, dbc: str) -> list[tuple[float, Any]]:
    db: Any = cantools.database.load_file(str(bundled_dbc(dbc)))
    msg = db.get_message_by_name(name)
    return [
        (f[0] - START_EPOCH_S, msg.decode(f[3], decode_choices=False, allow_truncated=True))
        for f in log_frames
        if f[1] == channel and f[2] == msg.frame_id
    ]


def _event(expected: dict[str, Any], kind: str, **attrs: Any) -> dict[str, Any]:
    for e in expected["events"]:
        if e["type"] == kind and all(e["attrs"].get(k) == v for k, v in attrs.items()):
            return dict(e)
    raise AssertionError(f"no {kind} event")


def test_camera_warnings_match_the_ground_truth(
    log_frames: Frames, expected: dict[str, Any]
) -> None:
    warnings = _decoded(log_frames, "can0", "ME_Display_Warnings", "mobileye.dbc")

    def frames_between(t0: float, t1: float) -> list[dict[str, Any]]:
        return [v for t, v in warnings if t0 - 1e-6 <= t <= t1 + 1e-6]

    def first_with(signal: str, value: int = 1) -> float:
        return next(t for t, v in warnings if v[signal] >= value)

    fcw = _event(expected, "fcw", urban=False)
    urban = _event(expected, "fcw", urban=True)
    on = [t for t, v in warnings if v["fcw_on"]]
    assert on[0] == pytest.approx(fcw["t_s"], abs=1e-5)
    assert all(v["sound_type"] == 6 for v in frames_between(fcw["t_s"], fcw["end_t_s"]))
    assert all(v["sound_type"] == 5 for v in frames_between(urban["t_s"], urban["end_t_s"]))
    assert 0.8 <= fcw["end_t_s"] - fcw["t_s"] <= 1.2
    ldw = _event(expected, "ldw_left")
    left = frames_between(ldw["t_s"], ldw["end_t_s"])
    assert len(left) == 5
    assert all(v["left_ldw_on"] == 1 and v["sound_type"] == 1 for v in left)
    assert sum(v["left_ldw_on"] for _, v in warnings) == 5
    assert sum(v["right_ldw_on"] for _, v in warnings) == 5
    pcw = _event(expected, "pcw")
    assert all(
        v["peds_fcw"] and v["peds_in_dz"] for v in frames_between(pcw["t_s"], pcw["end_t_s"])
    )
    assert first_with("headway_warning_level", 2) == pytest.approx(
        _event(expected, "headway_warning")["t_s"], abs=1e-5
    )
    assert first_with("tsr_warning_level") == pytest.approx(
        _event(expected, "overspeed")["t_s"], abs=1e-5
    )
    assert first_with("failsafe") == pytest.approx(
        _event(expected, "camera_failsafe")["t_s"], abs=1e-5
    )
    status = _decoded(log_frames, "can0", "ME_Obstacle_Status", "mobileye.dbc")
    fs = _event(expected, "camera_failsafe")
    assert {v["failsafe"] for t, v in status if fs["t_s"] <= t <= fs["end_t_s"]} == {2}
    assert {v["num_obstacles"] for _, v in status} >= {0, 1, 2}


def test_tsr_sign_then_held_decision(log_frames: Frames, expected: dict[str, Any]) -> None:
    sign = _event(expected, "tsr_sign")
    detections = _decoded(log_frames, "can0", "ME_TSR_1", "mobileye.dbc")
    assert [v["vision_only_sign_type"] for _, v in detections] == [4]
    assert detections[0][0] == pytest.approx(sign["truth"]["detection_t_s"], abs=1e-5)
    decision = _decoded(log_frames, "can0", "ME_TSR_Vision_Only", "mobileye.dbc")
    before = [v["sign_type_d1"] for t, v in decision if t < sign["t_s"] - 1e-6]
    held = [v["sign_type_d1"] for t, v in decision if sign["t_s"] - 1e-6 <= t <= sign["end_t_s"]]
    assert set(before) == {254}
    assert set(held) == {4}
    assert len(held) > 100


def test_vehicle_bus_agrees_with_the_camera(log_frames: Frames, expected: dict[str, Any]) -> None:
    wheels = _decoded(log_frames, "can1", "WHL_SPD11", "hyundai_taxi.dbc")
    car = _decoded(log_frames, "can0", "ME_Car_Signals", "mobileye.dbc")
    mean = [(t, sum(v[f"WHL_SPD_{w}"] for w in ("FL", "FR", "RL", "RR")) / 4) for t, v in wheels]
    brake = _event(expected, "harsh_braking")
    t0, t1 = brake["t_s"], brake["t_s"] + 1.5
    echo = expected["camera_speed"]
    hold_s = echo["refresh_s"][1]
    dropouts = [(d["t_s"], d["end_t_s"]) for d in echo["dropouts"]]
    assert len(dropouts) >= 3
    zeros = 0
    j = 0
    for t, v in car:
        while j + 1 < len(mean) and mean[j + 1][0] <= t:
            j += 1
        # A burst's frames end a few ms after the burst began, hence the 10 ms margins.
        if any(a <= t < b + 0.01 for a, b in dropouts) and v["speed"] == 0:
            zeros += 1
            continue
        assert not any(a + 0.01 <= t < b for a, b in dropouts), t
        slip = 3.0 if t0 <= t <= t1 else 0.0  # ABS lets the wheels slip below the car's speed
        # Each whole-km/h reading is the speed at the last refresh, held until the next one.
        held = [s for tm, s in mean[max(j - 60, 0) : j + 1] if tm >= t - hold_s - 0.02]
        assert min(abs(v["speed"] - s) for s in held) <= 2.0 + slip, t
    # every burst of every dropout (bursts come at most 81 ms apart)
    assert zeros >= sum(int((b - a) / 0.081) for a, b in dropouts)

    v0 = next(s for t, s in mean if t >= t0)
    v1 = next(s for t, s in mean if t >= t1)
    decel_g = (v0 - v1) / 3.6 / 1.5 / 9.80665
    assert decel_g == pytest.approx(0.45, abs=0.05)
    esp = _decoded(log_frames, "can1", "ESP12", "hyundai_taxi.dbc")
    assert min(v["LONG_ACCEL"] for t, v in esp if t0 < t < t1) < -4.0
    assert max(v["CYL_PRES"] for t, v in esp if t0 < t < t1) > 40.0
    tcs11 = _decoded(log_frames, "can1", "TCS11", "hyundai_taxi.dbc")
    abs_on = [t for t, v in tcs11 if v["ABS_ACT"]]
    assert abs_on
    assert t0 <= abs_on[0] <= abs_on[-1] <= t1
    tcs13 = _decoded(log_frames, "can1", "TCS13", "hyundai_taxi.dbc")
    assert all(v["DriverBraking"] for t, v in tcs13 if t0 < t < brake["end_t_s"])

    wipers = _event(expected, "wipers_on")
    cgw1 = _decoded(log_frames, "can1", "CGW1", "hyundai_taxi.dbc")
    switch = [(t, v["CF_Gway_WiperLowSw"]) for t, v in cgw1]
    assert all(s == 0 for t, s in switch if t < wipers["t_s"])
    assert all(s == 1 for t, s in switch if t >= wipers["truth"]["switch_t_s"])
    blades = [v["wipers"] for t, v in car if t >= wipers["t_s"]]
    assert 0 < sum(blades) < len(blades)  # the blade passes: the bit toggles


def _nmea_ok(line: str) -> bool:
    body, _, checksum = line[1:].partition("*")
    value = 0
    for ch in body:
        value ^= ord(ch)
    return line.startswith("$") and checksum == f"{value:02X}"


def test_nmea_track(paths: dict[str, Path], expected: dict[str, Any]) -> None:
    raw = paths["nmea"].read_bytes()
    assert raw.endswith(b"\r\n")
    lines = raw.decode("ascii").split("\r\n")[:-1]
    assert all(_nmea_ok(line) for line in lines)
    gga = [line for line in lines if line.startswith("$GPGGA")]
    rmc = [line for line in lines if line.startswith("$GPRMC")]
    assert len(gga) == len(rmc) == int(expected["duration_s"]) + 1
    assert rmc[0].split(",")[1] == "073000.00"
    assert rmc[0].split(",")[9] == "020326"
    for line in gga:
        f = line.split(",")
        lat = int(f[2][:2]) + float(f[2][2:]) / 60
        lon = int(f[4][:3]) + float(f[4][3:]) / 60
        assert 37.55 < lat < 37.59
        assert 126.96 < lon < 127.0
    speeds = [float(line.split(",")[7]) * 1.852 for line in rmc]  # knots -> km/h
    assert max(speeds) == pytest.approx(60.0, abs=0.5)
    assert speeds[0] == 0.0
    assert speeds[30] == pytest.approx(60.0, abs=0.5)
    courses = [float(line.split(",")[8]) for line in rmc]
    assert courses[30] == pytest.approx(351.0, abs=1.0)  # north on Sejong-daero
    assert 90.0 < courses[70] < 110.0  # east on Jongno after the right turn


def test_full_load_api(tmp_path: Path) -> None:
    paths = generate_drive(tmp_path, minutes=0.1, full_load=True, seed=3)
    assert set(paths) == {"log", "nmea", "expected"}
    expected = json.loads(paths["expected"].read_text(encoding="utf-8"))
    vehicle_rate = expected["frame_counts"]["can1"] / expected["duration_s"]
    assert vehicle_rate == pytest.approx(3700, rel=0.03)
    frames = read(paths["log"])
    status = _decoded(frames, "can0", "ME_Obstacle_Status", "mobileye.dbc")
    assert {v["num_obstacles"] for _, v in status} == {13}
    bursts = Counter(f[2] for f in frames if f[1] == "can0")
    assert bursts[0x75F] == bursts[0x700] == bursts[0x726]
    with pytest.raises(ValueError, match="elsewhere"):
        generate_drive(DEFAULT_OUT, minutes=0.1, full_load=True)
