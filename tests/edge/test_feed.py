"""The frame feed: routing, track fixes merged in time order, pacing on an injected clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge_agent.assemble import build_pipeline, default_decoder
from edge_agent.config import AgentConfig, parse_config
from edge_agent.errors import AgentError
from edge_agent.feed import (
    FixMerge,
    FrameFeed,
    Pacer,
    each_channel_its_own_bus,
    paced,
    route_by_config,
)
from edge_agent.sources import CanFrame
from protocol.records import GnssFix

T0 = 1_772_436_600.0


class SteppingClock:
    """Monotonic time that only moves when someone sleeps; records the sleeps."""

    def __init__(self) -> None:
        self.t = 50.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def raw_wall_ms(self) -> int:
        return 0

    def wall_ms(self) -> int:
        return 0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


def frame(t: float, channel: str = "can0", can_id: int = 0x700) -> CanFrame:
    return CanFrame(t, can_id, bytes(8), channel)


def config(buses: list[dict[str, str]]) -> AgentConfig:
    return parse_config(
        {"vehicle": {"id": "taxi-1", "fleet": "f"}, "bus": buses, "mqtt": {"host": "127.0.0.1"}},
        "test",
    )


def bus(name: str, logged: str | None = None) -> dict[str, str]:
    b = {"name": name, "interface": "replay", "channel": "drive.log"}
    return b if logged is None else {**b, "logged_channel": logged}


def test_routing_by_logged_channel_single_bus_and_none() -> None:
    two = config([bus("camera", "can0"), bus("vehicle", "can1")])
    route = route_by_config(two.bus)
    assert (route("can0"), route("can1"), route("can2")) == ("camera", "vehicle", None)
    one = route_by_config(config([bus("camera")]).bus)
    assert (one("can0"), one("7")) == ("camera", "camera")
    with pytest.raises(AgentError, match="logged_channel"):
        route_by_config(config([bus("a"), bus("b")]).bus)


def test_fixes_join_before_the_frame_they_precede_and_skips_drop_them() -> None:
    pipeline = build_pipeline(None, Path.cwd(), [])
    fixes = FixMerge(GnssFix(round((T0 + dt) * 1000), 37.5, 127.0, 3) for dt in (2.0, 0.5, 1.0))
    feed = FrameFeed(pipeline, each_channel_its_own_bus, fixes, default_decoder())
    feed.skip(frame(T0 + 0.6))  # stored before a restart: its fix went out with it
    assert pipeline.fixes == []
    feed.push(frame(T0 + 1.5, "can1"))
    assert [f.time_ms for f in pipeline.fixes] == [round((T0 + 1.0) * 1000)]
    assert set(pipeline.counters) == {"can1"}  # without a config a channel is a bus
    assert (feed.frames_in, len(fixes)) == (2, 1)


async def test_pacer_waits_on_the_injected_clock() -> None:
    clock = SteppingClock()
    frames = [frame(T0 + dt) for dt in (0.0, 0.5, 0.5, 2.0)]
    got = [f.timestamp async for f in paced(frames, Pacer(clock, 2.0))]
    assert got == [f.timestamp for f in frames]
    assert clock.sleeps == pytest.approx([0.25, 0.75])  # half the recorded gaps
    assert clock.t == pytest.approx(51.0)


def test_pacer_at_speed_zero_never_waits() -> None:
    clock = SteppingClock()
    pacer = Pacer(clock, 0)
    assert [pacer.delay_s(T0 + dt) for dt in (0, 10, 20)] == [0, 0, 0]
