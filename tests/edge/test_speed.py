"""Speed and deceleration by source: the camera's stepped, held, dropping speed and wheel speeds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.assemble import build_pipeline, default_decoder
from edge_agent.extract import EventExtractor, ExtractorSettings
from edge_agent.feed import FixMerge, FrameFeed, each_channel_its_own_bus
from edge_agent.sources import ReplaySource
from edge_agent.speed import CameraSpeed, SlopeWindow
from protocol.records import Event, FrameRef

G = 9.80665
CAR = FrameRef("camera", 0x760)
WHL = FrameRef("vehicle", 0x386)
DISPLAY = FrameRef("camera", 0x700)
DRIVES = Path(__file__).resolve().parents[2] / "hw_fixtures" / "drives"

Profile = Callable[[float], float]  # seconds -> km/h


def stop(start_s: float, from_kmh: float, g: float, to_kmh: float = 0.0) -> Profile:
    """Cruise, then brake at a constant ``g`` down to ``to_kmh``."""

    def speed(t: float) -> float:
        if t < start_s:
            return from_kmh
        return max(to_kmh, from_kmh - g * G * 3.6 * (t - start_s))

    return speed


def camera_readings(
    profile: Profile, end_s: float, dropouts: tuple[tuple[float, float], ...] = ()
) -> Iterator[tuple[int, int]]:
    """The camera's 0x760 speed: a burst every 80 ms, whole km/h, refreshed every 0.4-0.5 s."""
    held, refresh_at, k = 0, 0.0, 0
    for i in range(int(end_s / 0.08)):
        t = i * 0.08
        if t >= refresh_at:
            held = round(profile(t))
            refresh_at = t + (0.4, 0.5, 0.45)[k % 3]
            k += 1
        zero = any(a <= t < a + length for a, length in dropouts)
        yield round(t * 1000), 0 if zero else held


def feed_camera(x: EventExtractor, readings: Iterator[tuple[int, int]]) -> list[Event]:
    events: list[Event] = []
    for now_ms, kmh in readings:
        values = {"speed": kmh, "speed_available": 1, "wipers": 0}
        events += x.feed("ME_Car_Signals", values, now_ms, CAR, b"")
    return events


def feed_wheels(x: EventExtractor, profile: Profile, end_s: float) -> list[Event]:
    events: list[Event] = []
    for i in range(int(end_s / 0.02)):
        kmh = profile(i * 0.02)
        values = {f"WHL_SPD_{w}": kmh for w in ("FL", "FR", "RL", "RR")}
        events += x.feed("WHL_SPD11", values, i * 20, WHL, b"")
    return events


def braking(events: list[Event]) -> list[Event]:
    return [e for e in events if e.type == "harsh_braking"]


@pytest.mark.parametrize("g", [0.15, 0.2, 0.25])
def test_an_ordinary_stop_on_camera_speed_alone_is_not_harsh(g: float) -> None:
    events = feed_camera(EventExtractor(), camera_readings(stop(3.0, 50.0, g), 14.0))
    assert braking(events) == []


@pytest.mark.parametrize("g", [0.15, 0.2, 0.25])
def test_an_ordinary_stop_on_wheel_speeds_is_not_harsh(g: float) -> None:
    assert braking(feed_wheels(EventExtractor(), stop(3.0, 50.0, g), 14.0)) == []


def test_a_harsh_stop_on_camera_speed_alone_gives_one_event() -> None:
    events = braking(feed_camera(EventExtractor(), camera_readings(stop(3.0, 44.0, 0.45, 20), 9)))
    assert len(events) == 1
    attrs = events[0].attrs
    assert attrs["speed_source"] == "camera"
    assert attrs["window_s"] == 1.5
    assert attrs["threshold_g"] == 0.3
    assert isinstance(attrs["decel_g"], float)
    assert attrs["decel_g"] >= 0.3
    assert attrs["peak_decel_g"] == pytest.approx(0.45, abs=0.06)
    assert events[0].source == CAR
    # Stamped at the centre of the window whose slope crossed the threshold.
    assert 3_000 <= events[0].time_ms <= 3_800


def test_a_harsh_stop_on_wheel_speeds_gives_one_event() -> None:
    events = braking(feed_wheels(EventExtractor(), stop(3.0, 44.0, 0.45, 20), 9.0))
    assert len(events) == 1
    attrs = events[0].attrs
    assert attrs["speed_source"] == "wheels"
    assert attrs["window_s"] == 1.0
    assert attrs["peak_decel_g"] == pytest.approx(0.45, abs=0.01)
    assert events[0].source == WHL
    assert 3_000 <= events[0].time_ms <= 3_400


def test_wheel_speeds_win_over_the_camera_while_they_are_fresh() -> None:
    x = EventExtractor()
    profile = stop(3.0, 44.0, 0.45, 20)
    readings = dict(camera_readings(profile, 9.0))
    events: list[Event] = []
    for i in range(450):
        now_ms = i * 20
        kmh = profile(now_ms / 1000)
        wheels = {f"WHL_SPD_{w}": kmh for w in ("FL", "FR", "RL", "RR")}
        events += x.feed("WHL_SPD11", wheels, now_ms, WHL, b"")
        if now_ms in readings:
            car = {"speed": readings[now_ms], "speed_available": 1}
            events += x.feed("ME_Car_Signals", car, now_ms, CAR, b"")
    assert [e.attrs["speed_source"] for e in braking(events)] == ["wheels"]


@pytest.mark.parametrize(
    "dropouts",
    [((4.0, 0.6),), ((4.0, 2.0),), ((3.0, 0.5), (6.0, 1.2), (9.0, 1.9))],
)
def test_a_camera_dropout_is_not_a_stop(dropouts: tuple[tuple[float, float], ...]) -> None:
    x = EventExtractor()
    cruise = feed_camera(x, camera_readings(lambda t: 40.0, 12.0, dropouts))
    assert braking(cruise) == []
    # Slowing at an ordinary rate through a dropout: the gap is skipped, not read as a stop.
    slowing = feed_camera(
        EventExtractor(), camera_readings(stop(2.0, 60.0, 0.2), 9.0, ((4.0, 1.5),))
    )
    assert braking(slowing) == []


def test_an_event_during_a_dropout_carries_the_speed_before_it() -> None:
    x = EventExtractor()
    feed_camera(x, camera_readings(lambda t: 40.0, 5.0, ((4.0, 1.0),)))
    values = {"fcw_on": 1, "sound_type": 6}
    event = x.feed("ME_Display_Warnings", values, 4_900, DISPLAY, b"\x00" * 8)[0]
    assert event.speed_kmh == 40.0


def test_zero_held_past_any_dropout_is_taken_as_the_speed_without_a_deceleration() -> None:
    camera = CameraSpeed()
    for i in range(40):  # 3.2 s at 40 km/h
        camera.update(i * 80, 40.0)
    for i in range(40, 80):  # then 0 for 3.2 s
        camera.update(i * 80, 0.0)
        decel = camera.window.decel_mps2()
        assert decel is None or decel < 1.0
    assert camera.kmh == 0.0
    assert camera.dropouts == 1


def test_an_ordinary_stop_reaches_zero_on_the_camera() -> None:
    camera = CameraSpeed()
    for now_ms, kmh in camera_readings(stop(1.0, 30.0, 0.2), 8.0):
        camera.update(now_ms, kmh)
    assert camera.kmh == 0.0
    assert camera.dropouts == 0


def test_the_threshold_is_configurable() -> None:
    x = EventExtractor(ExtractorSettings(harsh_braking_g=0.2))
    events = braking(feed_wheels(x, stop(3.0, 50.0, 0.25), 14.0))
    assert [e.attrs["threshold_g"] for e in events] == [0.2]


def test_slope_window_is_a_least_squares_slope_and_stays_exact_over_hours() -> None:
    window = SlopeWindow(1_000)
    assert window.decel_mps2() is None
    samples = [(i * 20, 80.0 - 0.001 * 3.6 * i * 20 + (0.3 if i % 2 else -0.3)) for i in range(50)]
    for t, v in samples[:30]:
        window.add(t, v)
    assert window.decel_mps2() is None  # 0.6 s: too short to trust
    for t, v in samples[30:]:
        window.add(t, v)
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    slope = sum((t - mt) * (v - mv) for t, v in samples) / sum((t - mt) ** 2 for t, _ in samples)
    assert window.decel_mps2() == pytest.approx(-slope / 3.6 * 1000, rel=1e-9)
    assert window.decel_mps2() == pytest.approx(1.0, abs=0.05)
    # Three hours later the same shape gives the same slope (times are rebased as they grow).
    base = 3 * 3_600_000
    for t, v in samples:
        window.add(base + t, v)
    assert window.decel_mps2() == pytest.approx(-slope / 3.6 * 1000, rel=1e-6)


def drive_events(channel: str | None) -> list[Event]:
    events: list[Event] = []
    source = ReplaySource(DRIVES / "drive.log", logged_channel=channel)
    pipeline = build_pipeline(None, DRIVES, [], events.append)
    feed = FrameFeed(pipeline, each_channel_its_own_bus, FixMerge(()), default_decoder())
    for frame in source.frames():
        feed.push(frame)
    return events


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DRIVES / "drive.expected.json").read_text("utf-8"))
    return data


@pytest.mark.parametrize(("channel", "speed_source"), [(None, "wheels"), ("can0", "camera")])
def test_the_drive_has_exactly_its_scripted_harsh_braking(
    channel: str | None, speed_source: str, expected: dict[str, Any]
) -> None:
    start_ms = expected["start_epoch_s"] * 1000
    truth = [e for e in expected["events"] if e["type"] == "harsh_braking"]
    assert len(truth) == 1
    assert truth[0]["truth"]["decel_g"] == 0.45
    stops = expected["ordinary_stops"]
    assert {s["decel_g"] for s in stops} <= {0.15, 0.16, 0.2, 0.22, 0.25}
    assert len(expected["camera_speed"]["dropouts"]) >= 3
    found = braking(drive_events(channel))
    assert [e.attrs["speed_source"] for e in found] == [speed_source]
    t_s = (found[0].time_ms - start_ms) / 1000
    assert truth[0]["t_s"] - 0.1 <= t_s <= truth[0]["t_s"] + 0.6
