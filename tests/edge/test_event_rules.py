"""The rules of docs/events.md, one test per rule: when a camera warning starts, when it may
fire again (hold-off), and how it relates to the others."""

from __future__ import annotations

import json

from edge_agent.decode import DecodedValues
from edge_agent.extract import EventExtractor
from edge_agent.pipeline_state import extractor_state, restore_extractor
from protocol.contracts import SITUATION_JOINS
from protocol.records import Event, FrameRef
from tests.support.camera_warnings import warn

BURST_MS = 80


def play(x: EventExtractor, script: list[tuple[int, dict[str, int]]]) -> list[Event]:
    """Bursts at the given times, each with its changes from QUIET."""
    events: list[Event] = []
    for t, changes in script:
        events += warn(x, t, **changes)
    return events


def bursts(start: int, end: int, **changes: int) -> list[tuple[int, dict[str, int]]]:
    """One burst every BURST_MS in [start, end)."""
    return [(t, changes) for t in range(start, end, BURST_MS)]


def summary(events: list[Event]) -> list[tuple[str, int, object]]:
    return [(e.type, e.time_ms, e.attrs.get(SITUATION_JOINS)) for e in events]


FCW_ON = {"fcw_on": 1, "sound_type": 6}


def test_an_fcw_flickering_within_its_hold_off_is_one_event() -> None:
    # On, off for two bursts, on again, off for 1.9 s, on again: one encounter.
    script = bursts(0, 400, **FCW_ON) + bursts(400, 560)
    script += bursts(560, 800, **FCW_ON) + bursts(800, 2_700) + bursts(2_700, 3_000, **FCW_ON)
    assert summary(play(EventExtractor(), script)) == [("fcw", 0, None)]


def test_an_fcw_after_its_hold_off_is_a_new_event() -> None:
    # Last on at 320; on again 2.08 s later (the hold-off is 2 s).
    script = bursts(0, 400, **FCW_ON) + bursts(400, 2_400) + bursts(2_400, 2_800, **FCW_ON)
    assert summary(play(EventExtractor(), script)) == [("fcw", 0, None), ("fcw", 2_400, None)]


def test_the_hold_off_runs_from_the_last_burst_showing_the_warning() -> None:
    # A warning held 5 s, off for one second, on again: still the same situation.
    script = bursts(0, 5_000, **FCW_ON) + bursts(5_000, 6_000) + bursts(6_000, 6_400, **FCW_ON)
    assert summary(play(EventExtractor(), script)) == [("fcw", 0, None)]


def test_a_clock_stepped_back_ends_the_hold_off() -> None:
    x = EventExtractor()
    assert summary(warn(x, 100_000, **FCW_ON)) == [("fcw", 100_000, None)]
    assert warn(x, 100_080) == []
    assert summary(warn(x, 50_000, **FCW_ON)) == [("fcw", 50_000, None)]


def test_a_headway_warning_in_the_burst_of_an_fcw_is_part_of_the_fcw() -> None:
    x = EventExtractor()
    script = bursts(0, 800, fcw_on=1, sound_type=6, headway_warning_level=2)
    # The FCW ends; the short headway goes on and flickers: the same encounter still.
    script += bursts(800, 3_000, headway_warning_level=2)
    script += bursts(3_000, 3_240) + bursts(3_240, 4_000, headway_warning_level=2)
    events = play(x, script)
    assert summary(events) == [("fcw", 0, None)]
    assert events[0].attrs["headway_level"] == 2
    # Once the headway has been long enough for its hold-off (5 s) it is a new situation.
    later = play(x, bursts(4_000, 9_100) + bursts(9_100, 9_300, headway_warning_level=2))
    assert summary(later) == [("headway_warning", 9_100, None)]


def test_a_headway_warning_starting_while_an_fcw_is_open_gives_no_event() -> None:
    script = bursts(0, 400, **FCW_ON) + bursts(400, 1_000)
    script += bursts(1_000, 1_400, headway_warning_level=2)  # FCW's hold-off still running
    assert summary(play(EventExtractor(), script)) == [("fcw", 0, None)]


def test_an_fcw_after_a_headway_warning_joins_its_situation() -> None:
    script = bursts(0, 1_000, headway_warning_level=2)
    script += bursts(1_000, 1_400, headway_warning_level=2, fcw_on=1, sound_type=6)
    events = play(EventExtractor(), script)
    assert summary(events) == [("headway_warning", 0, None), ("fcw", 1_000, "headway_warning")]


def test_an_fcw_long_after_a_headway_warning_is_its_own_situation() -> None:
    script = bursts(0, 1_000, headway_warning_level=2) + bursts(1_000, 7_000)
    script += bursts(7_000, 7_400, **FCW_ON)
    assert summary(play(EventExtractor(), script)) == [
        ("headway_warning", 0, None),
        ("fcw", 7_000, None),
    ]


def test_a_pcw_after_its_pedestrian_in_the_zone_joins_it() -> None:
    script = bursts(0, 400, peds_in_dz=1)
    script += bursts(400, 1_200, peds_in_dz=1, peds_fcw=1, sound_type=6)
    script += bursts(1_200, 2_000, peds_in_dz=1)
    assert summary(play(EventExtractor(), script)) == [
        ("peds_in_dz", 0, None),
        ("pcw", 400, "peds_in_dz"),
    ]


def test_a_pedestrian_in_the_zone_raised_with_its_pcw_is_part_of_it() -> None:
    script = bursts(0, 800, peds_in_dz=1, peds_fcw=1, sound_type=6)
    script += bursts(800, 1_200) + bursts(1_200, 1_600, peds_in_dz=1)
    assert summary(play(EventExtractor(), script)) == [("pcw", 0, None)]


def test_overspeed_hovering_at_the_limit_is_one_event() -> None:
    # The warning level toggles as the speed hovers around the limit for 20 s.
    script = [(t, {"tsr_warning_level": 1 - (t // 1_000) % 2}) for t in range(0, 20_000, BURST_MS)]
    events = play(EventExtractor(), script)
    assert summary(events) == [("overspeed", 0, None)]


def test_lane_departures_left_and_right_are_separate_situations() -> None:
    script = bursts(0, 400, left_ldw_on=1) + bursts(400, 600, right_ldw_on=1)
    script += bursts(600, 1_000) + bursts(1_000, 1_400, left_ldw_on=1)
    script += bursts(1_400, 4_000) + bursts(4_000, 4_400, left_ldw_on=1)
    assert summary(play(EventExtractor(), script)) == [
        ("ldw_left", 0, None),
        ("ldw_right", 400, None),
        ("ldw_left", 4_000, None),
    ]


def decision(x: EventExtractor, t: int, sign: int | None) -> list[Event]:
    values: DecodedValues = {"sign_type_d1": sign, "supplementary_sign_type_d1": 0}
    return x.feed("ME_TSR_Vision_Only", values, t, FrameRef("camera", 0x727), b"")


def test_a_sign_decided_again_after_a_dropout_is_the_same_sign() -> None:
    x = EventExtractor()
    got = decision(x, 0, 4) + decision(x, 80, 4) + decision(x, 160, None)
    got += decision(x, 240, None) + decision(x, 320, 4)
    assert [e.type for e in got] == ["tsr_sign"]
    # Another sign, then this one again: each a new decision.
    got += decision(x, 400, 5) + decision(x, 480, 4)
    # The same sign after a gap longer than the hold-off (5 s): a new sign.
    got += decision(x, 560, None) + decision(x, 5_600, 4)
    assert [(e.time_ms, e.attrs["sign_type"]) for e in got] == [
        (0, 4),
        (400, 5),
        (480, 4),
        (5_600, 4),
    ]


def test_a_restored_extractor_keeps_the_hold_off() -> None:
    x = EventExtractor()
    assert len(play(x, bursts(0, 400, **FCW_ON) + bursts(400, 800))) == 1
    decision(x, 800, 4)
    state = json.loads(json.dumps(extractor_state(x)))  # plain data, as a checkpoint keeps it
    resumed = EventExtractor()
    restore_extractor(resumed, state)
    assert extractor_state(resumed) == state
    assert play(resumed, bursts(800, 1_200, **FCW_ON)) == []  # within the hold-off
    assert decision(resumed, 1_200, None) + decision(resumed, 1_280, 4) == []
