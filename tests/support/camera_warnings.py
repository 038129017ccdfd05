"""The camera's 0x700 warnings as the extractor receives them, all quiet unless changed."""

from __future__ import annotations

from edge_agent.decode import DecodedValues
from edge_agent.extract import EventExtractor
from protocol.records import Event, FrameRef

CAM = FrameRef("camera", 0x700)

QUIET: DecodedValues = {
    "sound_type": 0,
    "fcw_on": 0,
    "peds_fcw": 0,
    "peds_in_dz": 0,
    "left_ldw_on": 0,
    "right_ldw_on": 0,
    "headway_warning_level": 1,
    "headway_measurement": 2.0,
    "tsr_warning_level": 0,
    "failsafe": 0,
    "maintenance": 0,
    "tamper_alert": 0,
    "error_code": 0,
}


def warn(x: EventExtractor, t: int, **changes: int | float) -> list[Event]:
    """One warnings frame at ``t`` ms: QUIET with ``changes``."""
    return x.feed("ME_Display_Warnings", {**QUIET, **changes}, t, CAM, b"\x00" * 8)
