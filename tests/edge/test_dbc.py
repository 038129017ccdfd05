"""The fixture DBCs: they load strictly, and decode the reference's worked examples."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import cantools
import pytest

DBC_DIR = Path(__file__).resolve().parents[2] / "edge_agent" / "dbc"


@pytest.fixture(scope="module")
def mobileye() -> Any:
    return cantools.database.load_file(str(DBC_DIR / "mobileye.dbc"))


@pytest.fixture(scope="module")
def hyundai() -> Any:
    return cantools.database.load_file(str(DBC_DIR / "hyundai_taxi.dbc"))


def decode(db: Any, can_id: int, hex_payload: str, **kwargs: Any) -> dict[str, Any]:
    result: dict[str, Any] = db.decode_message(
        can_id, bytes.fromhex(hex_payload), allow_truncated=True, **kwargs
    )
    return result


def raw(db: Any, can_id: int, hex_payload: str) -> dict[str, Any]:
    return decode(db, can_id, hex_payload, scaling=False, decode_choices=False)


# -- structure -------------------------------------------------------------------------------


def test_both_dbcs_load_with_strict_checks(mobileye: Any, hyundai: Any) -> None:
    assert len(mobileye.messages) == 62
    assert {m.name for m in hyundai.messages} == {
        "WHL_SPD11", "SAS11", "ESP12", "TCS13", "TCS11", "CGW1", "CLU11", "FATC11",
    }  # fmt: skip


def test_mobileye_ids_names_and_layout(mobileye: Any) -> None:
    expected = {
        0x669: "ME_Aftermarket_Lane",
        0x700: "ME_Display_Warnings",
        0x727: "ME_TSR_Vision_Only",
        0x737: "ME_Lane",
        0x738: "ME_Obstacle_Status",
        0x760: "ME_Car_Signals",
        0x766: "ME_LKA_Left_Lane_A",
        0x767: "ME_LKA_Left_Lane_B",
        0x768: "ME_LKA_Right_Lane_A",
        0x769: "ME_LKA_Right_Lane_B",
        0x76A: "ME_LKA_Reference_Points",
        0x76B: "ME_LKA_Num_Next_Lanes",
        0x76C: "ME_LKA_Next_Left_Lane_A_0",
        0x76D: "ME_LKA_Next_Left_Lane_B_0",
        0x76E: "ME_LKA_Next_Right_Lane_A_0",
        0x76F: "ME_LKA_Next_Right_Lane_B_0",
    }
    expected.update({0x720 + i: f"ME_TSR_{i + 1}" for i in range(7)})
    for i in range(13):
        expected[0x739 + 3 * i] = f"ME_Obstacle_A_{i}"
        expected[0x73A + 3 * i] = f"ME_Obstacle_B_{i}"
        expected[0x73B + 3 * i] = f"ME_Obstacle_C_{i}"
    assert {m.frame_id: m.name for m in mobileye.messages} == expected
    for m in mobileye.messages:
        assert not m.is_extended_frame
        assert m.length == 8, m.name
        assert all(s.byte_order == "little_endian" for s in m.signals), m.name
    for part in "ABC":
        layouts = {
            tuple(s.name for s in mobileye.get_message_by_name(f"ME_Obstacle_{part}_{i}").signals)
            for i in range(13)
        }
        assert len(layouts) == 1


def test_exact_biased_scales(mobileye: Any) -> None:
    lane = mobileye.get_message_by_name("ME_Lane")
    yaw, pitch = lane.get_signal_by_name("yaw_angle"), lane.get_signal_by_name("pitch_angle")
    assert not yaw.is_signed
    assert not pitch.is_signed
    assert Fraction(yaw.scale) == Fraction(1, 1024)
    assert Fraction(yaw.offset) == Fraction(-0x7FFF, 1024)
    assert Fraction(pitch.scale) == Fraction(1, 1024 * 512)
    assert Fraction(pitch.offset) == Fraction(-0x7FFF, 1024 * 512)
    lka = mobileye.get_message_by_name("ME_LKA_Left_Lane_A")
    c2 = lka.get_signal_by_name("curvature_c2")
    c3 = lka.get_signal_by_name("curvature_derivative_c3")
    # 1/1024000 is not a binary fraction: the nearest double, written exactly in the DBC
    assert c2.scale == float(Fraction(1, 1_024_000))
    assert c2.offset == float(Fraction(-0x7FFF, 1_024_000))
    assert Fraction(c3.scale) == Fraction(1, 1 << 28)
    assert Fraction(c3.offset) == Fraction(-0x7FFF, 1 << 28)
    assert lane.get_signal_by_name("lane_curvature").scale == 3.81e-6
    assert mobileye.get_message_by_name("ME_Display_Warnings").get_signal_by_name(
        "headway_measurement"
    ).scale == pytest.approx(0.1)


SENTINELS = [
    ("ME_Lane", "lane_curvature", -0x8000),
    ("ME_Lane", "lane_heading", -0x800),
    ("ME_Aftermarket_Lane", "distance_to_left_lane", -0x800),
    ("ME_Aftermarket_Lane", "distance_to_right_lane", -0x800),
    ("ME_Obstacle_A_0", "obstacle_pos_x", 0xFFF),
    ("ME_Obstacle_A_12", "obstacle_pos_y", -0x200),
    ("ME_Obstacle_A_5", "obstacle_rel_vel_x", -0x800),
    ("ME_Obstacle_B_0", "obstacle_length", 0x3F),
    ("ME_Obstacle_B_3", "obstacle_width", 0xFF),
    ("ME_Obstacle_B_0", "radar_pos_x", 0xFFF),
    ("ME_Obstacle_B_0", "radar_vel_x", -0x800),
    ("ME_Obstacle_B_12", "matched_radar_id", 0x7F),
    ("ME_Obstacle_C_0", "obstacle_scale_change", 0x7FFF),
    ("ME_Obstacle_C_7", "object_accel_x", -0x200),
    ("ME_TSR_1", "vision_only_sign_type", 255),
    ("ME_TSR_7", "vision_only_sign_type", 254),
    ("ME_TSR_Vision_Only", "sign_type_d1", 254),
    ("ME_TSR_Vision_Only", "sign_type_d4", 255),
]


@pytest.mark.parametrize(("message", "signal", "raw_value"), SENTINELS)
def test_sentinels_have_invalid_value_names(
    mobileye: Any, message: str, signal: str, raw_value: int
) -> None:
    sig = mobileye.get_message_by_name(message).get_signal_by_name(signal)
    assert str(sig.choices[raw_value]).startswith("INVALID")


def test_every_obstacle_carries_the_same_sentinels(mobileye: Any) -> None:
    for i in range(13):
        a = mobileye.get_message_by_name(f"ME_Obstacle_A_{i}")
        assert str(a.get_signal_by_name("obstacle_pos_x").choices[0xFFF]) == "INVALID"
        b = mobileye.get_message_by_name(f"ME_Obstacle_B_{i}")
        assert str(b.get_signal_by_name("matched_radar_id").choices[0x7F]) == "INVALID"


def test_value_tables(mobileye: Any) -> None:
    warnings = mobileye.get_message_by_name("ME_Display_Warnings")
    sound = warnings.get_signal_by_name("sound_type").choices
    assert {k: str(v) for k, v in sound.items()} == {
        0: "SILENT", 1: "LDW_LEFT", 2: "LDW_RIGHT", 3: "HW1_HEADWAY", 4: "TSR_OVERSPEED",
        5: "UFCW", 6: "FCW_PCW", 7: "UNDEFINED",
    }  # fmt: skip
    assert set(warnings.get_signal_by_name("headway_warning_level").choices) == {0, 1, 2, 3}
    assert set(warnings.get_signal_by_name("time_indicator").choices) == {0, 1, 2}
    assert str(warnings.get_signal_by_name("ldw_off").comment).find("LanesOn") >= 0


# -- worked examples (reference §5) ---------------------------------------------------------


def test_0x700_no_warning(mobileye: Any) -> None:
    d = decode(mobileye, 0x700, "1020010101000001")
    assert str(d["sound_type"]) == "SILENT"
    assert str(d["time_indicator"]) == "NIGHT"
    assert d["zero_speed"] == 1
    assert d["headway_valid"] == 1
    assert d["headway_measurement"] == 0.0
    assert d["error_valid"] == 1
    assert d["error_code"] == 0
    assert d["ldw_off"] == 1
    assert d["fcw_on"] == 0
    assert raw(mobileye, 0x700, "1020010101000001")["headway_warning_level"] == 1


@pytest.mark.parametrize(
    ("payload", "first_frame"), [("9500010109000002", 1), ("1500010109000002", 0)]
)
def test_0x700_urban_fcw(mobileye: Any, payload: str, first_frame: int) -> None:
    d = raw(mobileye, 0x700, payload)
    assert d["sound_type"] == 5
    assert d["time_indicator"] == 2
    assert d["sound_suppressed"] == first_frame
    assert d["headway_valid"] == 1
    assert d["headway_measurement"] == 0
    assert d["ldw_off"] == 1
    assert d["fcw_on"] == 1
    assert d["headway_warning_level"] == 2
    assert str(decode(mobileye, 0x700, payload)["sound_type"]) == "UFCW"


def test_0x760(mobileye: Any) -> None:
    d = decode(mobileye, 0x760, "00AF1F0000000000")
    assert d["brakes"] == d["left_signal"] == d["right_signal"] == d["wipers"] == 0
    assert d["low_beam"] == d["high_beam"] == 0
    assert d["wipers_available"] == 1
    assert d["low_beam_available"] == 0
    assert d["high_beam_available"] == 1
    assert d["speed_available"] == 1
    assert d["speed"] == 31


def test_0x669(mobileye: Any) -> None:
    d = raw(mobileye, 0x669, "2020FA000020E005")
    assert d["lane_confidence_left"] == 0
    assert d["ldw_available_left"] == 0
    assert d["lane_type_left"] == 2
    assert d["lane_confidence_right"] == 0
    assert d["lane_type_right"] == 2
    s = decode(mobileye, 0x669, "2020FA000020E005")
    assert s["distance_to_left_lane"] == pytest.approx(-1.88)
    assert s["distance_to_right_lane"] == pytest.approx(1.88)


def test_0x766(mobileye: Any) -> None:
    d = decode(mobileye, 0x766, "C220FEFF7FFF7F00", decode_choices=False)
    assert d["lane_type"] == 2
    assert d["quality"] == 0
    assert d["model_degree"] == 3
    assert d["position_c0"] == -1.875
    assert d["curvature_c2"] == 0.0
    assert d["curvature_derivative_c3"] == pytest.approx(0.0, abs=1e-18)
    assert d["marking_width"] == 0.0


def test_0x767_dlc4(mobileye: Any) -> None:
    d = decode(mobileye, 0x767, "FF7F0080")
    assert d == {"heading_c1": 0.0, "view_range": 0.0, "view_range_availability": 1}


def test_0x737(mobileye: Any) -> None:
    payload = "00800008FF7FAF7F"
    d = decode(mobileye, 0x737, payload)
    assert str(d["lane_curvature"]) == "INVALID"
    assert str(d["lane_heading"]) == "INVALID"
    r = raw(mobileye, 0x737, payload)
    assert r["lane_curvature"] == -0x8000
    assert r["lane_heading"] == -0x800
    assert d["construction_area"] == 0
    assert d["left_ldw_availability"] == d["right_ldw_availability"] == 0
    assert d["yaw_angle"] == 0.0
    assert d["pitch_angle"] == pytest.approx(-0.000153, abs=1e-6)


def test_0x738_dlc6(mobileye: Any) -> None:
    d = raw(mobileye, 0x738, "010A00020301")
    assert d == {
        "num_obstacles": 1,
        "timestamp": 10,
        "application_version": 0,
        "active_version_number_section": 2,
        "left_close_range_cut_in": 0,
        "right_close_range_cut_in": 0,
        "go": 0,
        "protocol_version": 3,
        "close_car": 1,
        "failsafe": 0,
    }
    assert str(decode(mobileye, 0x738, "010A00020301")["go"]) == "STOP"


def test_0x739(mobileye: Any) -> None:
    d = decode(mobileye, 0x739, "37A7011F00740F41", decode_choices=False)
    assert d["obstacle_id"] == 55
    assert d["obstacle_pos_x"] == pytest.approx(26.44, abs=0.01)
    assert d["obstacle_pos_y"] == pytest.approx(1.94, abs=0.01)
    assert d["blinker_info"] == 0
    assert d["cut_in_and_out"] == 0
    assert d["obstacle_rel_vel_x"] == -8.75
    assert d["obstacle_type"] == 0
    assert d["obstacle_status"] == 1
    assert d["obstacle_brake_lights"] == 0
    assert d["obstacle_valid"] == 1


def test_0x73a_sentinels(mobileye: Any) -> None:
    payload = "3F2701F0FF00087F"
    d = decode(mobileye, 0x73A, payload)
    for name in ("obstacle_length", "radar_pos_x", "radar_vel_x", "matched_radar_id"):
        assert str(d[name]) == "INVALID", name
    r = raw(mobileye, 0x73A, payload)
    assert (r["obstacle_length"], r["radar_pos_x"], r["radar_vel_x"], r["matched_radar_id"]) == (
        0x3F,
        0xFFF,
        -0x800,
        0x7F,
    )
    assert d["obstacle_width"] == pytest.approx(1.95)
    assert d["obstacle_age"] == 1
    assert r["obstacle_lane"] == 0
    assert d["cipv_flag"] == 0
    assert r["radar_match_confidence"] == 0
    # the physical value the sentinel would otherwise pretend to be
    assert decode(mobileye, 0x73A, payload, decode_choices=False)["obstacle_length"] == 31.5


def test_0x73b(mobileye: Any) -> None:
    payload = "2302FF7F2E0052FE"
    d = decode(mobileye, 0x73B, payload)
    assert d["obstacle_angle_rate"] == pytest.approx(5.47)
    assert str(d["obstacle_scale_change"]) == "INVALID"
    assert raw(mobileye, 0x73B, payload)["obstacle_scale_change"] == 0x7FFF
    assert d["object_accel_x"] == pytest.approx(1.38)
    assert d["obstacle_replaced"] == 0
    assert d["obstacle_angle"] == pytest.approx(-4.30)


def test_sign_types_decode(mobileye: Any) -> None:
    d = decode(mobileye, 0x727, "FE00FE00FE00FE00")
    assert all(str(d[f"sign_type_d{i}"]) == "INVALID_NO_SIGN" for i in range(1, 5))
    assert str(decode(mobileye, 0x727, "0400FE00FE00FE00")["sign_type_d1"]) == "SPEED_LIMIT_50"
    tsr = mobileye.get_message_by_name("ME_TSR_1")
    payload = tsr.encode({"vision_only_sign_type": 4, "supplementary_sign_type": 0,
                          "sign_position_x": 9.5, "sign_position_y": -4.5,
                          "sign_position_z": -1.5, "filter_type": 0})  # fmt: skip
    back = tsr.decode(payload, decode_choices=False)
    assert (back["sign_position_y"], back["sign_position_z"]) == (-4.5, -1.5)
    # document widths: y is 7 bits (bit 31 unused), z is 6 bits (bits 38-39 unused)
    assert payload[3] & 0x80 == 0
    assert payload[4] & 0xC0 == 0


# -- Hyundai -----------------------------------------------------------------------------------


def test_wheel_speeds_round_trip(hyundai: Any) -> None:
    m = hyundai.get_message_by_name("WHL_SPD11")
    assert m.frame_id == 0x386
    data = m.encode({
        "WHL_SPD_FL": 50.0, "WHL_SPD_FR": 50.03125, "WHL_SPD_RL": 0.0, "WHL_SPD_RR": 511.96875,
        "WHL_SPD_AliveCounter_LSB": 3, "WHL_SPD_AliveCounter_MSB": 1,
        "WHL_SPD_Checksum_LSB": 0, "WHL_SPD_Checksum_MSB": 0,
    })  # fmt: skip
    assert int.from_bytes(data[0:2], "little") & 0x3FFF == 1600
    assert data[1] >> 6 == 3
    back = m.decode(data)
    assert back["WHL_SPD_FR"] == 50.03125
    assert back["WHL_SPD_RR"] == 511.96875


def test_steering_angle_is_signed_tenths(hyundai: Any) -> None:
    m = hyundai.get_message_by_name("SAS11")
    assert (m.frame_id, m.length) == (0x2B0, 5)
    data = m.encode({"SAS_Angle": -145.0, "SAS_Speed": 112, "SAS_Stat": 0, "MsgCount": 9,
                     "CheckSum": 0})  # fmt: skip
    assert int.from_bytes(data[0:2], "little", signed=True) == -1450
    assert data[2] == 28  # 112 deg/s at 4 deg/s per bit
    assert m.decode(data)["SAS_Angle"] == pytest.approx(-145.0)


def test_esp12_offsets_and_brake_pressure(hyundai: Any) -> None:
    m = hyundai.get_message_by_name("ESP12")
    values: dict[str, float] = dict.fromkeys((s.name for s in m.signals), 0.0)
    values.update({"LAT_ACCEL": 0.0, "LONG_ACCEL": -4.41, "CYL_PRES": 64.0, "YAW_RATE": -23.37})
    back = m.decode(m.encode(values))
    assert back["LONG_ACCEL"] == pytest.approx(-4.41)
    assert back["CYL_PRES"] == pytest.approx(64.0)
    assert back["YAW_RATE"] == pytest.approx(-23.37)
    zero = m.decode(bytes(8))
    assert zero["LAT_ACCEL"] == pytest.approx(-10.23)
    assert zero["YAW_RATE"] == pytest.approx(-40.95)


def test_flags_and_body_signals(hyundai: Any) -> None:
    tcs11 = hyundai.get_message_by_name("TCS11")
    assert tcs11.frame_id == 0x153
    assert tcs11.decode(bytes([0, 0x04, 0, 0, 0, 0, 0, 0]))["ABS_ACT"] == 1
    tcs13 = hyundai.get_message_by_name("TCS13")
    assert tcs13.get_signal_by_name("DriverBraking").start == 55
    cgw1 = hyundai.get_message_by_name("CGW1")
    assert cgw1.frame_id == 0x541
    wiper_low = bytes([0, 0, 0, 0x02, 0, 0, 0, 0])
    assert cgw1.decode(wiper_low)["CF_Gway_WiperLowSw"] == 1
    clu11 = hyundai.get_message_by_name("CLU11")
    assert (clu11.frame_id, clu11.length) == (0x4F1, 4)
    assert clu11.decode(bytes([0, 100, 0, 0]))["CF_Clu_Vanz"] == 50.0
    fatc = hyundai.get_message_by_name("FATC11")
    assert fatc.decode(bytes([0, 0, 0, 97, 0, 0, 0, 0]))["CR_Fatc_OutTemp"] == 8.5
