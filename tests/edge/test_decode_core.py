"""FrameDecoder on a small inline DBC: sentinels, short frames, caching, id spaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.decode import FrameDecoder, load_dbc
from edge_agent.errors import DbcError

DBC = """VERSION ""
NS_ :
BS_:
BU_: CAM
BO_ 1792 Demo: 8 CAM
 SG_ speed : 0|8@1+ (1,0) [0|255] "km/h" Vector__XXX
 SG_ heading : 8|12@1- (0.0005,0) [-1|1] "" Vector__XXX
 SG_ yaw : 32|16@1+ (0.0009765625,-31.9990234375) [-32|32] "rad" Vector__XXX
 SG_ tail : 48|8@1+ (1,0) [0|255] "" Vector__XXX
BO_ 2147485440 DemoExt: 8 CAM
 SG_ value : 0|8@1+ (1,0) [0|255] "" Vector__XXX
VAL_ 1792 heading -2048 "INVALID" ;
VAL_ 1792 speed 255 "INVALID_NO_SPEED" 0 "stopped" ;
"""


@pytest.fixture
def decoder(tmp_path: Path) -> FrameDecoder:
    path = tmp_path / "demo.dbc"
    path.write_text(DBC)
    return FrameDecoder.from_paths([path])


def test_scales_raw_values_and_keeps_integers(decoder: FrameDecoder) -> None:
    msg = decoder.lookup(0x700, extended=False)
    assert msg is not None
    values = msg.decode(bytes([31, 0x10, 0x00, 0, 0xFF, 0x7F, 7, 0]))
    assert values["speed"] == 31
    assert isinstance(values["speed"], int)
    assert values["heading"] == pytest.approx(0x010 * 0.0005)
    assert values["yaw"] == pytest.approx(0.0)
    assert values["tail"] == 7


def test_invalid_sentinels_become_none_but_other_labels_do_not(decoder: FrameDecoder) -> None:
    msg = decoder.lookup(0x700, extended=False)
    assert msg is not None
    # heading raw 0x800 is -2048 as 12-bit signed: the INVALID label
    values = msg.decode(bytes([255, 0x00, 0x08, 0, 0, 0, 0, 0]))
    assert values["speed"] is None
    assert values["heading"] is None
    assert msg.decode(bytes(8))["speed"] == 0  # "stopped" is a label, not a sentinel


def test_short_frame_decodes_only_covered_signals(decoder: FrameDecoder) -> None:
    msg = decoder.lookup(0x700, extended=False)
    assert msg is not None
    values = msg.decode(bytes([40, 0, 0, 0, 0xFF, 0x7F]))
    assert set(values) == {"speed", "heading", "yaw"}
    assert msg.decode(b"") == {}


def test_unchanged_payload_reuses_the_previous_result(decoder: FrameDecoder) -> None:
    msg = decoder.lookup(0x700, extended=False)
    assert msg is not None
    first = msg.decode(bytearray(b"\x01" * 8))
    assert msg.decode(bytes(b"\x01" * 8)) is first
    assert msg.decode(b"\x02" * 8) is not first


def test_extended_and_standard_ids_are_distinct(decoder: FrameDecoder) -> None:
    standard = decoder.lookup(0x700, extended=False)
    extended = decoder.lookup(0x700, extended=True)
    assert standard is not None
    assert extended is not None
    assert (standard.name, extended.name) == ("Demo", "DemoExt")
    assert decoder.lookup(0x123, extended=False) is None
    assert sorted(decoder.can_ids) == [(0x700, False), (0x700, True)]


def test_broken_dbc_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dbc"
    bad.write_text('VERSION ""\nBO_ 1792 Demo: 8 CAM\n SG_ speed : 0|8@1+ (1,0 [0|255] "" X\n')
    with pytest.raises(DbcError, match=r"bad\.dbc: not a valid DBC file"):
        FrameDecoder.from_paths([bad])
    with pytest.raises(DbcError, match=r"missing\.dbc: DBC file not found"):
        load_dbc(tmp_path / "missing.dbc")
