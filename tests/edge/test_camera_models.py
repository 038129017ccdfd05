"""Camera models: the Mobileye 8 Connect's 0x700 next to the Standard one.

The vectors are built bit by bit from the 8 Connect's signal table (mobileye8-can reference,
section 1) and its differences from the Standard layout (section 2); the tests follow them
from frame to decoded values to events, for both models, so that a wrong model is visible.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import cantools
import pytest

from edge_agent.assemble import build_pipeline, default_decoder
from edge_agent.camera import (
    CAMERA_MODELS,
    ME8,
    STANDARD,
    WARNINGS_MESSAGE,
    CameraModel,
    me8_as_standard,
)
from edge_agent.cli import main
from edge_agent.config import load_config, parse_config
from edge_agent.decode import DecodedValues, FrameDecoder
from edge_agent.errors import ConfigError
from edge_agent.profile import DEFAULT_PROFILE
from edge_agent.sources import CanFrame

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_772_436_600.0


def me8_bytes(  # noqa: PLR0913 - one keyword per field of the reference's table
    *,
    sound: int = 0,
    suppressed: int = 0,
    headway_valid: int = 0,
    headway_tenths: int = 0,
    ldw_unavailable: tuple[int, int] = (0, 0),
    fcw_on: int = 0,
    pcw_ped_dz: int = 0,
    cyclist: int = 0,
    tsr_level: int = 0,
    hw_level: int = 0,
) -> bytes:
    """An 8 Connect 0x700 payload; byte 3 = 0x01 and bits 36-37 set, as a real unit sends."""
    left, right = ldw_unavailable
    return bytes(
        [
            sound | suppressed << 7,
            0,
            headway_valid | headway_tenths << 1,
            0x01,
            left | fcw_on << 3 | 0x30,
            right | pcw_ped_dz << 1 | cyclist << 4 | 0x80,
            tsr_level,
            hw_level,
        ]
    )


QUIET = me8_bytes()
PCW_FRAME = me8_bytes(sound=6, headway_valid=1, headway_tenths=8, pcw_ped_dz=3, hw_level=1)
CYCLIST_IN_DZ = me8_bytes(sound=7, pcw_ped_dz=2, cyclist=1)
SOFT_FCW = me8_bytes(sound=5, suppressed=1, headway_valid=1, headway_tenths=6, fcw_on=1, hw_level=2)
# Value 1 of the pedestrian enumeration is undefined on the 8 Connect; Standard: pedestrian FCW.
UNDEFINED_PEDESTRIAN = me8_bytes(pcw_ped_dz=1)
HEADWAY_BEYOND_RANGE = me8_bytes(headway_valid=1, headway_tenths=0, hw_level=1)
OVERSPEED_20 = me8_bytes(sound=4, tsr_level=2)


def test_the_vector_builder_follows_the_reference_recipe() -> None:
    # sound=B0&7; headway_s=(B2>>1)*0.1; fcw_on=(B4>>3)&1; pcw_peddz=(B5>>1)&3; cyclist=(B5>>4)&1
    assert PCW_FRAME.hex() == "0600110130860001"
    assert SOFT_FCW.hex() == "85000d0138800002"
    assert CYCLIST_IN_DZ.hex() == "0700000130940000"


@functools.cache
def decoder(model: CameraModel) -> FrameDecoder:
    return default_decoder(model)


def decoded(model: CameraModel, payload: bytes) -> DecodedValues:
    compiled = decoder(model).lookup(0x700, extended=False)
    assert compiled is not None
    return model.normalise(compiled.decode(payload))


def events(model: CameraModel, *payloads: bytes) -> list[dict[str, Any]]:
    """Event type, time and attributes for 0x700 frames 80 ms apart, after one quiet frame."""
    pipeline = build_pipeline(None, Path.cwd(), ["can0"], camera=model)
    for i, payload in enumerate((QUIET, *payloads)):
        pipeline.on_frame("can0", CanFrame(T0 + 0.08 * i, 0x700, payload, "can0"))
    return [{"type": e.type, "time_ms": e.time_ms, **e.attrs} for e in pipeline.drain().events]


# -- the DBC ---------------------------------------------------------------------------------


def test_the_me8_dbc_loads_in_cantools_as_is_and_holds_0x700_only() -> None:
    db: Any = cantools.database.load_file(str(ROOT / "edge_agent" / "dbc" / "mobileye8.dbc"))
    (message,) = db.messages
    assert (message.frame_id, message.name, message.length) == (0x700, "ME_Display_Warnings", 8)
    layout = {s.name: (s.start, s.length) for s in message.signals}
    assert layout["pcw_ped_dz"] == (41, 2)
    assert layout["ldw_unavailable_left"] == (32, 1)
    assert layout["ldw_unavailable_right"] == (40, 1)
    assert layout["cyclist"] == (44, 1)
    assert layout["pcw_config_index"] == (61, 3)
    # Bits 36-37 are set in every frame of a real unit: no signal may claim them.
    assert not any(s.start <= bit < s.start + s.length for s in message.signals for bit in (36, 37))
    assert all(s.byte_order == "little_endian" for s in message.signals)


def test_the_me8_model_layers_0x700_over_the_base_dbc() -> None:
    for can_id in (0x727, 0x738, 0x760, 0x669):
        standard = decoder(STANDARD).lookup(can_id, extended=False)
        mine = decoder(ME8).lookup(can_id, extended=False)
        assert standard is not None
        assert mine is not None
        assert mine.name == standard.name
    speed = decoder(ME8).lookup(0x760, extended=False)
    assert speed is not None
    assert speed.decode(bytes([0, 0x80, 42, 0, 0, 0, 0, 0]))["speed"] == 42
    assert set(CAMERA_MODELS) == {"standard", "me8"}


@pytest.mark.parametrize("model", list(CAMERA_MODELS.values()), ids=list(CAMERA_MODELS))
def test_every_model_gives_the_warning_signals_the_profile_and_extractor_read(
    model: CameraModel,
) -> None:
    read_by_extractor = {
        "sound_type", "fcw_on", "peds_fcw", "peds_in_dz", "left_ldw_on", "right_ldw_on",
        "headway_warning_level", "headway_measurement", "tsr_warning_level", "failsafe",
        "maintenance", "error_code", "tamper_alert",
    }  # fmt: skip
    sampled = {
        p.signal.split(".", 1)[1]
        for p in DEFAULT_PROFILE
        if p.signal.startswith(f"{WARNINGS_MESSAGE}.")
    }
    assert sampled
    values = decoded(model, me8_bytes(headway_valid=1, headway_tenths=12))
    assert read_by_extractor | sampled <= set(values)


# -- frames -> decoded values ----------------------------------------------------------------


def test_a_pcw_frame_decodes_per_model() -> None:
    me8 = decoded(ME8, PCW_FRAME)
    assert me8["sound_type"] == 6
    assert me8["pcw_ped_dz"] == 3
    assert (me8["peds_fcw"], me8["peds_in_dz"]) == (1, 1)
    assert me8["headway_measurement"] == pytest.approx(0.8)
    assert (me8["error_valid"], me8["error_code"], me8["tsr_enabled"]) == (1, 0, 1)
    assert "left_crossing" not in me8
    standard = decoded(STANDARD, PCW_FRAME)
    # The Standard layout reads bits 36-37, set by a real 8 Connect, as lane crossings.
    assert (standard["left_crossing"], standard["right_crossing"]) == (1, 1)
    assert "pcw_ped_dz" not in standard


def test_an_undefined_pedestrian_value_decodes_per_model() -> None:
    me8 = decoded(ME8, UNDEFINED_PEDESTRIAN)
    assert (me8["pcw_ped_dz"], me8["peds_fcw"], me8["peds_in_dz"]) == (1, None, None)
    standard = decoded(STANDARD, UNDEFINED_PEDESTRIAN)
    assert (standard["peds_fcw"], standard["peds_in_dz"]) == (1, 0)


def test_headway_beyond_range_is_unknown_on_me8_not_zero_seconds() -> None:
    assert decoded(ME8, HEADWAY_BEYOND_RANGE)["headway_measurement"] is None
    assert decoded(ME8, HEADWAY_BEYOND_RANGE)["headway_valid"] == 1
    assert decoded(STANDARD, HEADWAY_BEYOND_RANGE)["headway_measurement"] == 0


@pytest.mark.parametrize(
    ("pcw_ped_dz", "expected"),
    [(0, (0, 0)), (1, (None, None)), (2, (0, 1)), (3, (1, 1))],
)
def test_the_pedestrian_enumeration_maps_to_the_standard_flags(
    pcw_ped_dz: int, expected: tuple[int | None, int | None]
) -> None:
    values = decoded(ME8, me8_bytes(pcw_ped_dz=pcw_ped_dz))
    assert (values["peds_fcw"], values["peds_in_dz"]) == expected


@pytest.mark.parametrize(("sides", "ldw_off"), [((0, 0), 0), ((1, 0), 0), ((0, 1), 0), ((1, 1), 1)])
def test_ldw_is_off_when_neither_side_can_warn(sides: tuple[int, int], ldw_off: int) -> None:
    assert decoded(ME8, me8_bytes(ldw_unavailable=sides))["ldw_off"] == ldw_off


def test_the_normaliser_is_pure_and_a_short_frame_is_no_news() -> None:
    compiled = decoder(ME8).lookup(0x700, extended=False)
    assert compiled is not None
    short = compiled.decode(PCW_FRAME[:5])  # bytes 5-7 missing: no pcw_ped_dz, no right side
    before = dict(short)
    out = me8_as_standard(short)
    assert dict(short) == before
    assert (out["peds_fcw"], out["peds_in_dz"], out["ldw_off"]) == (None, None, None)


# -- frames -> events ------------------------------------------------------------------------


def test_an_escalation_is_one_danger_zone_event_and_one_warning() -> None:
    found = events(ME8, CYCLIST_IN_DZ, PCW_FRAME, CYCLIST_IN_DZ, QUIET)
    assert [(e["type"], e["sound"]) for e in found] == [
        ("peds_in_dz", "peds_in_dz"),
        ("pcw", "fcw_pcw"),
    ]
    assert found[1]["raw"] == PCW_FRAME.hex()


def test_the_same_bytes_give_different_events_per_model() -> None:
    frames = (UNDEFINED_PEDESTRIAN, QUIET, SOFT_FCW, QUIET, CYCLIST_IN_DZ)
    me8 = [(e["type"], e["sound"], e.get("urban")) for e in events(ME8, *frames)]
    # docs/events.md: a headway warning raised in the FCW's burst is that FCW's situation (no
    # event of its own), and a danger-zone rise within the PCW's hold-off is the PCW's.
    assert me8 == [
        ("fcw", "soft_fcw", False),
        ("peds_in_dz", "peds_in_dz", None),
    ]
    standard = [(e["type"], e["sound"], e.get("urban")) for e in events(STANDARD, *frames)]
    assert standard == [
        ("pcw", "silent", None),
        ("fcw", "urban_fcw", True),
    ]


def test_a_soft_fcw_is_not_an_urban_fcw_on_me8() -> None:
    me8 = {e["type"]: e for e in events(ME8, SOFT_FCW)}
    assert set(me8) == {"fcw"}  # its headway warning is the FCW's situation (docs/events.md)
    assert (me8["fcw"]["sound"], me8["fcw"]["urban"]) == ("soft_fcw", False)
    assert me8["fcw"]["headway_level"] == 2
    assert decoded(ME8, SOFT_FCW)["headway_measurement"] == pytest.approx(0.6)
    standard = {e["type"]: e for e in events(STANDARD, SOFT_FCW)}
    assert (standard["fcw"]["sound"], standard["fcw"]["urban"]) == ("urban_fcw", True)


def test_sound_7_is_the_danger_zone_sound_on_me8_only() -> None:
    (me8,) = events(ME8, CYCLIST_IN_DZ)
    assert (me8["type"], me8["sound"], me8["sound_code"]) == ("peds_in_dz", "peds_in_dz", 7)
    (standard,) = events(STANDARD, CYCLIST_IN_DZ)
    assert (standard["type"], standard["sound"]) == ("peds_in_dz", "undefined")


def test_a_pcw_held_across_an_undefined_value_fires_once() -> None:
    undefined = me8_bytes(sound=6, pcw_ped_dz=1)
    found = events(ME8, PCW_FRAME, undefined, PCW_FRAME)
    # Its danger-zone flag rises in the PCW's burst: the PCW's situation (docs/events.md).
    assert [e["type"] for e in found] == ["pcw"]
    assert {e["time_ms"] for e in found} == {round((T0 + 0.08) * 1000)}


def test_overspeed_on_me8() -> None:
    (me8,) = events(ME8, OVERSPEED_20)
    assert (me8["type"], me8["level"], me8["sound"]) == ("overspeed", 2, "overspeed")


# -- configuration ---------------------------------------------------------------------------


def agent_config(camera: dict[str, Any] | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "vehicle": {"id": "taxi-1", "fleet": "f"},
        "bus": [
            {"name": "camera", "interface": "virtual", "channel": "c0"},
            {"name": "vehicle", "interface": "virtual", "channel": "c1"},
        ],
    }
    if camera is not None:
        data["camera"] = camera
    return data


def test_camera_model_me8_in_the_config_picks_its_layout_and_sound_table() -> None:
    config = parse_config(agent_config({"model": "me8"}), "agent.toml")
    assert config.camera.camera_model is ME8
    assert config.camera.table()[7] == "peds_in_dz"
    pipeline = build_pipeline(config, Path.cwd(), ["camera", "vehicle"])
    for i, payload in enumerate((QUIET, UNDEFINED_PEDESTRIAN, CYCLIST_IN_DZ)):
        pipeline.on_frame("camera", CanFrame(T0 + 0.08 * i, 0x700, payload, "c0"))
    (event,) = pipeline.drain().events
    assert (event.type, event.attrs["sound"]) == ("peds_in_dz", "peds_in_dz")
    vehicle = pipeline.decoders["vehicle"]
    assert vehicle.lookup(0x700, extended=False) is None


def test_the_default_model_is_standard_and_a_sound_table_still_overrides() -> None:
    default = parse_config(agent_config(None), "agent.toml")
    assert default.camera.camera_model is STANDARD
    assert default.camera.table()[5] == "urban_fcw"
    overridden = parse_config(
        agent_config({"model": "me8", "sound_table": {"5": "virtual_bumper"}}), "agent.toml"
    )
    assert overridden.camera.table() == {5: "virtual_bumper"}
    named = parse_config(agent_config({"model": "me8", "sound_table": "awsdisplay"}), "a.toml")
    assert named.camera.table()[5] == "soft_fcw"
    assert named.camera.table()[7] == "reserved"


def test_an_unknown_model_is_one_line_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        '[vehicle]\nid = "taxi-1"\nfleet = "f"\n\n[[bus]]\nname = "camera"\n'
        'interface = "virtual"\nchannel = "c0"\n\n[camera]\nmodel = "me9"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: key 'camera.model': expected one of ['me8', 'standard'] (got 'me9')"
    )


# -- edge-agent decode --camera --------------------------------------------------------------


@pytest.fixture
def me8_log(tmp_path: Path) -> Path:
    """A candump -L log of an 8 Connect at 40 km/h: a cyclist in the danger zone escalating
    to a collision warning, a soft FCW, and the undefined pedestrian value."""
    # Three situations, 3 s apart: longer than any of their hold-offs (docs/events.md).
    situations = [
        [QUIET, CYCLIST_IN_DZ, PCW_FRAME, CYCLIST_IN_DZ, QUIET],
        [SOFT_FCW, QUIET],
        [UNDEFINED_PEDESTRIAN, QUIET],
    ]
    timed = [
        (n * 3.0 + i * 0.08, f) for n, group in enumerate(situations) for i, f in enumerate(group)
    ]
    lines = []
    for offset, payload in timed:
        t = T0 + offset
        lines.append(f"({t:.6f}) can0 760#0080280000000000")
        lines.append(f"({t + 0.001:.6f}) can0 700#{payload.hex().upper()}")
    path = tmp_path / "me8.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def decode_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert main(["decode", *args]) == 0
    out = capsys.readouterr()
    assert json.loads(out.err.strip().splitlines()[-1])["summary"]["frames"] == 18
    return [json.loads(line) for line in out.out.splitlines()]


def test_decode_camera_me8_finds_the_right_events(
    me8_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    found = decode_in_process(capsys, str(me8_log), "--camera", "me8")
    # The headway warning raised with each FCW is that FCW's situation (docs/events.md).
    assert [(e["type"], e["sound"]) for e in found] == [
        ("peds_in_dz", "peds_in_dz"),
        ("pcw", "fcw_pcw"),
        ("fcw", "soft_fcw"),
    ]
    assert all(e["speed_kmh"] == 40 and e["can_id"] == "0x700" for e in found)
    standard = decode_in_process(capsys, str(me8_log))
    assert [(e["type"], e["sound"]) for e in standard] == [
        ("peds_in_dz", "undefined"),
        ("pcw", "fcw_pcw"),
        ("fcw", "urban_fcw"),
        ("pcw", "silent"),
    ]


def test_decode_camera_flag_wins_over_the_config(
    me8_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        '[vehicle]\nid = "taxi-1"\nfleet = "f"\n\n[[bus]]\nname = "camera"\n'
        'interface = "replay"\nchannel = "me8.log"\nlogged_channel = "can0"\n\n'
        '[camera]\nmodel = "standard"\n'
    )
    by_config = decode_in_process(capsys, str(me8_log), "--config", str(config))
    assert [e["type"] for e in by_config].count("pcw") == 2
    by_flag = decode_in_process(capsys, str(me8_log), "--config", str(config), "--camera", "me8")
    assert [e["type"] for e in by_flag].count("pcw") == 1


def test_the_decode_command_names_the_camera_in_its_summary(me8_log: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "decode", str(me8_log), "--camera", "me8"],
        capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stderr.strip().splitlines()[-1])["summary"]["camera"] == "me8"
    assert len(result.stdout.splitlines()) == 3


def test_decode_refuses_an_unknown_camera_in_one_line(
    me8_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["decode", str(me8_log), "--camera", "me9"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --camera: invalid choice: 'me9'" in err.splitlines()[-1]
