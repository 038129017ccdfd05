"""The decoder against real Mobileye recordings kept beside the repository (reference only).

The recordings carry no licence, so they are never copied into the project; CI has them
in ../shared/hw_reference. Facts checked here are listed in shared/reference/mobileye-can.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.assemble import build_pipeline
from edge_agent.cli import iso_ms
from edge_agent.sources import ReplaySource

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "hw_reference"
APPROACH = REFERENCE / "derived_mobileye_only_WVE_test3006.candump.log"
APPROACH_BLF = REFERENCE / "uwaft_WVE_Approach_Test_20mph_test3006_2021-02-18_21-39-54.blf"

pytestmark = pytest.mark.skipif(not APPROACH.exists(), reason="reference recordings not present")


def test_real_urban_fcw_is_found_with_its_raw_sound_code() -> None:
    source = ReplaySource(APPROACH)
    pipeline = build_pipeline(None, Path.cwd(), ["can0"])
    for frame in source.frames():
        pipeline.on_frame("can0", frame)
    fcws = [e for e in pipeline.events if e.type == "fcw"]
    # The approach test triggers the camera's warning about 20.5 s into the drive.
    assert iso_ms(fcws[0].time_ms) == "2021-02-18T21:40:14.583Z"
    assert fcws[0].attrs["sound_code"] == 5
    assert fcws[0].attrs["urban"] is True
    assert fcws[0].attrs["raw"] == "9500010109000002"
    counters = pipeline.counters["can0"]
    assert counters.decode_errors == 0
    assert counters.short_frames > 0  # 0x738 with 6 bytes, lane B frames with 4
    # 0x650 (undocumented fixed FOE) is the only id of the burst not in the DBC
    assert counters.unknown_id == sum(
        1 for f in ReplaySource(APPROACH).frames() if f.arbitration_id == 0x650
    )


@pytest.mark.skipif(not APPROACH_BLF.exists(), reason="reference BLF not present")
def test_same_events_from_the_blf_channel_as_from_the_derived_log() -> None:
    def events(source: ReplaySource) -> list[tuple[str, int]]:
        pipeline = build_pipeline(None, Path.cwd(), ["bus"])
        for frame in source.frames():
            if not frame.is_extended_id:
                pipeline.on_frame("bus", frame)
        return [(e.type, e.time_ms) for e in pipeline.events]

    from_log = events(ReplaySource(APPROACH))
    from_blf = events(ReplaySource(APPROACH_BLF, logged_channel="1"))
    assert from_log
    assert [t for t, _ in from_blf] == [t for t, _ in from_log]
    assert all(abs(a - b) <= 1 for (_, a), (_, b) in zip(from_blf, from_log, strict=True))
