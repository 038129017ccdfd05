"""Event state machines fed with decoded values directly (no clock, no DBC)."""

from __future__ import annotations

from edge_agent.extract import EventExtractor, ExtractorSettings
from edge_agent.signs import SOUND_TABLES
from protocol.records import Event, FrameRef, GnssFix
from tests.support.camera_warnings import CAM, warn

VEH = FrameRef("vehicle", 0x386)


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


def test_fcw_fires_once_per_rising_edge_with_raw_sound_code() -> None:
    x = EventExtractor()
    assert warn(x, 0) == []
    first = warn(x, 80, fcw_on=1, sound_type=6)
    assert types(first) == ["fcw"]
    assert first[0].attrs["sound_code"] == 6
    assert first[0].attrs["urban"] is False
    assert warn(x, 160, fcw_on=1, sound_type=6) == []  # held: no new event
    assert warn(x, 240) == []
    # Past the hold-off after the last burst showing it (docs/events.md): a new situation.
    again = warn(x, 2_400, fcw_on=1, sound_type=5)
    assert again[0].attrs["urban"] is True
    assert again[0].time_ms == 2_400


def test_urban_follows_the_configured_dialect() -> None:
    x = EventExtractor(ExtractorSettings(sound_table=SOUND_TABLES["awsdisplay"]))
    event = warn(x, 0, fcw_on=1, sound_type=5)[0]
    assert event.attrs["urban"] is False
    assert event.attrs["sound"] == "soft_fcw"
    assert event.attrs["sound_code"] == 5


def test_every_camera_warning_has_its_own_edge() -> None:
    x = EventExtractor()
    warn(x, 0)
    got = warn(
        x,
        80,
        peds_fcw=1,
        peds_in_dz=1,
        left_ldw_on=1,
        right_ldw_on=1,
        headway_warning_level=2,
        tsr_warning_level=3,
        failsafe=1,
        maintenance=1,
        tamper_alert=1,
    )
    got += x.feed("ME_Obstacle_Status", {"failsafe": 0}, 82, FrameRef("camera", 0x738), b"")
    # A pedestrian in the zone raised in the burst of its PCW is part of the PCW.
    assert sorted(types(got)) == sorted(
        [
            "pcw",
            "ldw_left",
            "ldw_right",
            "headway_warning",
            "overspeed",
            "camera_failsafe",
            "camera_maintenance",
            "camera_tamper",
        ]
    )


def test_failsafe_waits_for_the_cause_in_the_same_burst() -> None:
    x = EventExtractor()
    status = FrameRef("camera", 0x738)
    x.feed("ME_Obstacle_Status", {"failsafe": 0}, 0, status, b"")
    assert warn(x, 80, failsafe=1) == []  # held until 0x738 of this burst
    got = x.feed("ME_Obstacle_Status", {"failsafe": 2}, 83, status, b"")
    assert types(got) == ["camera_failsafe"]
    assert got[0].time_ms == 80
    assert got[0].attrs["causes"] == "blur"
    # a burst without 0x738 (short burst): the next 0x700 releases it with what is known
    # (after the failsafe hold-off, so the rise is a new situation)
    assert warn(x, 160) == []
    assert warn(x, 40_240, failsafe=1) == []
    late = warn(x, 40_320, failsafe=1)
    assert [(e.type, e.time_ms, e.attrs["causes"]) for e in late] == [
        ("camera_failsafe", 40_240, "blur")
    ]


def test_headway_level_three_counts_as_reaching_two() -> None:
    x = EventExtractor()
    assert types(warn(x, 0, headway_warning_level=3)) == ["headway_warning"]
    assert warn(x, 80, headway_warning_level=2) == []


def test_missing_signal_in_short_frame_is_not_an_edge() -> None:
    x = EventExtractor()
    assert types(warn(x, 0, fcw_on=1)) == ["fcw"]
    assert x.feed("ME_Display_Warnings", {"sound_type": 0}, 80, CAM, b"") == []
    assert warn(x, 160, fcw_on=1) == []


def wheels(x: EventExtractor, t: int, kmh: float) -> list[Event]:
    v = {"WHL_SPD_FL": kmh, "WHL_SPD_FR": kmh, "WHL_SPD_RL": kmh, "WHL_SPD_RR": kmh}
    return x.feed("WHL_SPD11", v, t, VEH, b"")


def test_harsh_braking_from_wheel_speeds_fires_once_and_rearms() -> None:
    x = EventExtractor()
    events: list[Event] = []
    t, v = 0, 50.0
    for _ in range(50):  # cruise 1 s at 50 Hz
        events += wheels(x, t, v)
        t += 20
    for _ in range(75):  # 0.45 g for 1.5 s
        v -= 0.45 * 9.80665 * 3.6 * 0.02
        events += wheels(x, t, v)
        t += 20
    for _ in range(100):  # steady again (the episode is reported once over), then brake again
        events += wheels(x, t, v)
        t += 20
    assert types(events) == ["harsh_braking"]
    decel = events[0].attrs["decel_g"]
    assert isinstance(decel, float)
    assert decel >= 0.3
    assert events[0].attrs["peak_decel_g"] == 0.45
    for _ in range(40):
        v = max(0.0, v - 0.5 * 9.80665 * 3.6 * 0.02)
        events += wheels(x, t, v)
        t += 20
    for _ in range(100):
        events += wheels(x, t, v)
        t += 20
    assert types(events) == ["harsh_braking", "harsh_braking"]


def test_gentle_braking_is_not_harsh() -> None:
    x = EventExtractor()
    t, v, events = 0, 50.0, []
    for _ in range(200):
        v -= 0.2 * 9.80665 * 3.6 * 0.02
        events += wheels(x, t, v)
        t += 20
    assert events == []


def test_events_carry_speed_and_only_a_fresh_fix() -> None:
    x = EventExtractor()
    wheels(x, 0, 42.0)
    fix = GnssFix(time_ms=0, lat=37.57, lon=126.98, mode=3)
    x.update_fix(fix, 0)
    event = warn(x, 500, fcw_on=1)[0]
    assert event.speed_kmh == 42.0
    assert event.fix == fix
    assert event.source == CAM
    warn(x, 600)
    late = warn(x, 20_000, fcw_on=1)[0]
    assert late.fix is None  # fix is 20 s old
    assert late.speed_kmh is None  # wheel speeds stale, no camera speed either


def test_camera_speed_is_the_fallback() -> None:
    x = EventExtractor()
    x.feed("ME_Car_Signals", {"speed": 31, "speed_available": 1, "wipers": 0}, 0, CAM, b"")
    assert x.speed_kmh(0) == 31.0


def test_tsr_sign_on_new_decision_with_limit_and_position() -> None:
    x = EventExtractor()
    tsr = FrameRef("camera", 0x727)
    no_sign = {"sign_type_d1": None, "supplementary_sign_type_d1": 0}
    assert x.feed("ME_TSR_Vision_Only", no_sign, 0, tsr, b"") == []
    x.feed(
        "ME_TSR_1",
        {"vision_only_sign_type": 4, "sign_position_x": 20.5, "sign_position_y": 3.0},
        50,
        FrameRef("camera", 0x720),
        b"",
    )
    fifty = {"sign_type_d1": 4, "supplementary_sign_type_d1": 0}
    got = x.feed("ME_TSR_Vision_Only", fifty, 80, tsr, b"")
    assert types(got) == ["tsr_sign"]
    assert got[0].attrs["limit_kmh"] == 50
    assert got[0].attrs["sign_x_m"] == 20.5
    assert x.feed("ME_TSR_Vision_Only", fifty, 160, tsr, b"") == []
    over = warn(x, 200, tsr_warning_level=2)
    assert over[0].attrs["limit_kmh"] == 50


def test_wipers_from_vehicle_switch_and_from_camera_blade_passes() -> None:
    x = EventExtractor()
    cgw = FrameRef("vehicle", 0x541)
    off = {"CF_Gway_WiperIntSw": 0, "CF_Gway_WiperLowSw": 0, "CF_Gway_WiperHighSw": 0}
    assert x.feed("CGW1", off, 0, cgw, b"") == []
    got = x.feed("CGW1", {**off, "CF_Gway_WiperLowSw": 1}, 100, cgw, b"")
    assert types(got) == ["wipers_on"]
    assert x.feed("CGW1", {**off, "CF_Gway_WiperLowSw": 1}, 200, cgw, b"") == []

    cam = EventExtractor()
    car = {"speed": 30, "speed_available": 1, "wipers": 0}
    assert cam.feed("ME_Car_Signals", car, 0, CAM, b"") == []
    assert types(cam.feed("ME_Car_Signals", {**car, "wipers": 1}, 80, CAM, b"")) == ["wipers_on"]
    assert cam.feed("ME_Car_Signals", car, 160, CAM, b"") == []  # between blade passes: still on
    assert cam.feed("ME_Car_Signals", car, 30_000, CAM, b"") == []  # off after the hold time
    assert types(cam.feed("ME_Car_Signals", {**car, "wipers": 1}, 30_080, CAM, b"")) == [
        "wipers_on"
    ]
