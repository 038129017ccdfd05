"""The evidence ring and window policy (edge_agent.evidence): pure, fed with frames."""

from __future__ import annotations

import can

from edge_agent.evidence import (
    DAY_MS,
    ENTRY_OVERHEAD,
    TRIM_EVERY,
    WIRE_BYTES_PER_FRAME,
    Evidence,
    EvidenceSettings,
    FrameRing,
)
from protocol.contracts import URGENT_EVENT_TYPES
from protocol.records import Event, FrameRef

T0_MS = 1_700_000_000_000
CAM = "camera"


def frame(time_ms: float, can_id: int = 0x700, data: bytes = bytes(8)) -> can.Message:
    return can.Message(
        timestamp=time_ms / 1000, arbitration_id=can_id, data=data, is_extended_id=False
    )


def event(time_ms: int, kind: str = "fcw", bus: str = CAM) -> Event:
    return Event(kind, time_ms, None, None, FrameRef(bus, 0x700))


def evidence(**settings: int) -> Evidence:
    return Evidence(EvidenceSettings(**settings), URGENT_EVENT_TYPES.__contains__)  # type: ignore[arg-type]


def feed(ev: Evidence, start_ms: int, end_ms: int, step_ms: int = 10, bus: str = CAM) -> None:
    for t in range(start_ms, end_ms, step_ms):
        ev.on_frame(bus, frame(t))


def test_the_ring_is_bounded_by_bytes_and_counts_what_it_evicts() -> None:
    ring = FrameRing(10_000)
    for i in range(5_000):
        ring.push(i, 0x700, False, bytes(8))
        assert ring.used <= 10_000
    per_frame = 13 + 8 + ENTRY_OVERHEAD
    assert len(ring) == 10_000 // per_frame
    assert ring.evicted == 5_000 - len(ring)
    assert ring.latest_us() == 4_999


def test_the_ring_keeps_only_what_the_window_needs() -> None:
    ring = FrameRing(1 << 20, keep_us=1_000_000)
    for i in range(10_000):  # 10 s at 1 kHz
        ring.push(i * 1000, 0x700, False, bytes(8))
    assert ring.latest_us() == 9_999_000
    assert 1_000 <= len(ring) <= 1_000 + TRIM_EVERY
    assert ring.evicted == 0
    assert ring.used == len(ring) * (13 + 8 + ENTRY_OVERHEAD)


def test_an_urgent_event_keeps_5_s_before_and_2_s_after_of_its_bus() -> None:
    ev = evidence()
    at = T0_MS + 10_000
    for t in range(T0_MS, T0_MS + 20_000, 10):
        ev.on_frame(CAM, frame(t))
        ev.on_frame("vehicle", frame(t + 5, 0x386))
        if t == at:
            ev.on_event(event(at))
    frames = ev.take()
    times = [f.time_us // 1000 for f in frames]
    assert times == list(range(at - 5_000, at + 2_001, 10))
    assert {f.bus for f in frames} == {CAM}
    assert {f.event_ms for f in frames} == {at}
    assert ev.stats.events == 1
    assert ev.stats.frames == len(frames)
    assert ev.stats.bytes_today == len(frames) * (8 + WIRE_BYTES_PER_FRAME)
    assert ev.take() == ()


def test_the_window_is_configurable() -> None:
    ev = evidence(before_ms=1_000, after_ms=500)
    at = T0_MS + 3_000
    feed(ev, T0_MS, at + 1)
    ev.on_event(event(at))
    feed(ev, at + 10, at + 2_000)
    times = [f.time_us // 1000 for f in ev.take()]
    assert times[0] == at - 1_000
    assert times[-1] == at + 500


def test_bulk_events_and_events_without_a_bus_keep_nothing() -> None:
    ev = evidence()
    feed(ev, T0_MS, T0_MS + 1_000)
    ev.on_event(event(T0_MS + 500, "speed_sign"))
    ev.on_event(Event("fcw", T0_MS + 500, None, None, None))
    feed(ev, T0_MS + 1_000, T0_MS + 5_000)
    assert ev.take(final=True) == ()
    assert ev.stats.events == ev.stats.dropped_events == 0


def test_events_of_one_frame_share_one_capture() -> None:
    ev = evidence()
    at = T0_MS + 6_000
    feed(ev, T0_MS, at + 1)
    ev.on_event(event(at, "fcw"))
    ev.on_event(event(at, "headway_warning"))
    feed(ev, at + 10, at + 3_000)
    frames = ev.take()
    assert len(frames) == len({f.time_us for f in frames})
    assert ev.stats.events == 1


def test_a_silent_bus_does_not_hold_a_capture_and_the_final_take_closes_it() -> None:
    ev = evidence()
    at = T0_MS + 6_000
    feed(ev, T0_MS, at + 1)
    ev.on_event(event(at))
    feed(ev, at + 10, at + 500)  # the bus stops inside the "after" window
    assert ev.take() == ()
    feed(ev, at + 3_000, at + 3_001, bus="vehicle")  # another bus passes the window
    assert ev.take()[-1].time_us // 1000 == at + 490
    ev.on_event(event(at + 3_000, bus="vehicle"))
    last = ev.take(final=True)
    assert [f.time_us // 1000 for f in last] == [at + 3_000]


def test_the_daily_cap_drops_whole_captures_counts_them_and_resets_next_day() -> None:
    one = (7_001 // 10 + 1) * (8 + WIRE_BYTES_PER_FRAME)  # one capture at 100 frames/s
    ev = evidence(day_cap_bytes=one + one // 2)
    t = T0_MS - T0_MS % DAY_MS + 3_600_000  # 01:00 UTC
    for n in range(4):
        at = t + n * 20_000
        feed(ev, at - 10_000, at + 1)
        ev.on_event(event(at))
        feed(ev, at + 10, at + 10_000)
    kept = ev.take()
    assert {f.event_ms for f in kept} == {t}
    assert ev.stats.events == 1
    assert ev.stats.bytes_today == one
    # The 2nd capture passed the cap when complete (counted with its size); then the day
    # is full and the 3rd and 4th are dropped without being captured.
    assert ev.stats.dropped_events == 3
    assert ev.stats.dropped_bytes == one
    assert ev.stats.day_full
    next_day = t + DAY_MS
    feed(ev, next_day - 6_000, next_day + 1)
    ev.on_event(event(next_day))
    feed(ev, next_day + 10, next_day + 3_000)
    assert {f.event_ms for f in ev.take()} == {next_day}
    assert ev.stats.bytes_today == one


def test_a_spent_budget_opens_no_capture() -> None:
    ev = evidence(day_cap_bytes=1)
    feed(ev, T0_MS, T0_MS + 100)
    ev.on_event(event(T0_MS + 50))
    feed(ev, T0_MS + 100, T0_MS + 3_000)
    assert ev.take() == ()
    ev.on_event(event(T0_MS + 2_900))
    assert ev.stats.dropped_events == 2
    assert ev.stats.dropped_bytes == (5 + 1 + 200) * (8 + WIRE_BYTES_PER_FRAME)  # the first only


def test_open_captures_per_bus_are_limited() -> None:
    ev = evidence(max_open=2, after_ms=60_000)
    feed(ev, T0_MS, T0_MS + 1_000)
    for n in range(5):
        ev.on_event(event(T0_MS + 100 * n))
    assert ev.stats.dropped_events == 3
    assert {f.event_ms for f in ev.take(final=True)} == {T0_MS, T0_MS + 100}
