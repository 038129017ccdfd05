"""The frame feed: how every frame a command reads reaches the pipeline.

``decode``, ``run`` and ``replay`` all go through :class:`FrameFeed`: the recording's (or
bus's) channel is routed to a configured bus, track fixes up to the frame's time join in
first (as gpsd would have delivered them), then the pipeline takes the frame. Pacing to
the recorded time runs on the injected clock (:class:`Pacer`, :func:`paced`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edge_agent.clock import Clock
from edge_agent.config import AgentConfig, BusConfig
from edge_agent.decode import FrameDecoder
from edge_agent.errors import AgentError, ConfigError
from edge_agent.nmea import read_nmea
from edge_agent.pipeline import Pipeline
from edge_agent.sources import BusSource, FrameLike, ReplaySource
from protocol.records import GnssFix

Route = Callable[[str], str | None]  # logged channel -> bus name, None: not ours

# Below this a pacing delay is not worth a sleep.
MIN_PACE_DELAY_S = 0.002
# Unpaced, a reader still lets other tasks run after this many frames.
YIELD_EVERY_FRAMES = 256


def route_by_config(buses: Sequence[BusConfig]) -> Route:
    """Channels named by ``bus[].logged_channel``; a single bus takes every channel."""
    with_channel = {b.logged_channel: b.name for b in buses if b.logged_channel is not None}
    if with_channel:
        return with_channel.get
    if len(buses) == 1:
        name = buses[0].name
        return lambda _channel: name
    raise AgentError(
        "config has several buses but none names its 'logged_channel'; "
        "set bus[].logged_channel to map the recording's channels"
    )


def route_to(bus: str) -> Route:
    """Every frame of a source opened for one bus belongs to that bus."""
    return lambda _channel: bus


def each_channel_its_own_bus(channel: str) -> str:
    return channel


class FixMerge:
    """Fixes of a recorded track, handed out in time order up to a frame's time."""

    def __init__(self, fixes: Iterable[GnssFix] = ()) -> None:
        self._fixes = deque(sorted(fixes, key=lambda f: f.time_ms))

    def until(self, stamp_s: float) -> list[GnssFix]:
        fixes = self._fixes
        if not fixes or fixes[0].time_ms > stamp_s * 1000:
            return []
        out = []
        while fixes and fixes[0].time_ms <= stamp_s * 1000:
            out.append(fixes.popleft())
        return out

    def __len__(self) -> int:
        return len(self._fixes)


def track_fixes(config: AgentConfig, config_dir: Path, *, replaying: bool) -> list[GnssFix]:
    """Fixes of ``[gnss] nmea``, for replay buses and ``edge-agent replay``."""
    gnss = config.gnss
    path = None if gnss is None else gnss.nmea_path(config_dir)
    if path is None:
        return []
    live = [b.name for b in config.bus if b.interface != "replay"]
    if live and not replaying:
        raise ConfigError(
            f"key 'gnss.nmea': a track file only goes with replay buses, not {live}; "
            "use 'gnss.gpsd' for live buses"
        )
    if not path.is_file():
        raise ConfigError(f"key 'gnss.nmea': file not found: {path}")
    return list(read_nmea(path))


@dataclass
class FrameFeed:
    pipeline: Pipeline
    route: Route
    fixes: FixMerge = field(default_factory=FixMerge)
    # Without a config every channel is a bus, decoded with this one decoder.
    shared_decoder: FrameDecoder | None = None
    frames_in: int = 0  # frames offered, routed or not

    def push(self, frame: FrameLike) -> None:
        self.frames_in += 1
        bus = self.route(str(frame.channel))
        if bus is None:
            return
        pipeline = self.pipeline
        if self.shared_decoder is not None and bus not in pipeline.decoders:
            pipeline.add_bus(bus, self.shared_decoder)
        if self.fixes:
            for fix in self.fixes.until(frame.timestamp):
                pipeline.on_fix(fix, fix.time_ms)
        pipeline.on_frame(bus, frame)

    def skip(self, frame: FrameLike) -> None:
        """A frame whose records are already stored: its track fixes went out with them."""
        self.frames_in += 1
        if self.fixes:
            self.fixes.until(frame.timestamp)


class Pacer:
    """Frames at ``speed`` times their recorded pace on the injected clock (0 = no pacing)."""

    def __init__(self, clock: Clock, speed: float) -> None:
        self.clock = clock
        self.speed = speed
        self._origin: tuple[float, float] | None = None

    def delay_s(self, stamp: float) -> float:
        """How long to wait before the frame stamped ``stamp``; the first sets the origin."""
        if self.speed <= 0:
            return 0.0
        now = self.clock.monotonic()
        if self._origin is None:
            self._origin = (now, stamp)
            return 0.0
        start, first = self._origin
        return (stamp - first) / self.speed - (now - start)

    async def wait(self, stamp: float) -> None:
        delay = self.delay_s(stamp)
        if delay > MIN_PACE_DELAY_S:
            await self.clock.sleep(delay)


async def paced(frames: Iterable[FrameLike], pacer: Pacer) -> AsyncIterator[FrameLike]:
    """``frames`` at the pacer's pace, letting other tasks run while unpaced."""
    for n, frame in enumerate(frames):
        if pacer.speed > 0:
            await pacer.wait(frame.timestamp)
        elif n % YIELD_EVERY_FRAMES == 0:
            await asyncio.sleep(0)
        yield frame


class FrameSource(Protocol):
    """Where ``run`` reads one configured bus from: a live CAN interface or a recording."""

    def frames(self, stop: asyncio.Event) -> AsyncIterator[FrameLike]: ...
    def close(self) -> None: ...
    @property
    def backlog(self) -> int:
        """Frames read and not yet handed on: work waiting, for the watchdog."""
        ...

    @property
    def dropped(self) -> int:
        """Frames lost because the consumer fell behind."""
        ...

    @property
    def malformed_lines(self) -> int: ...


class RecordingBus:
    """A recording played as a live bus, at its recorded pace."""

    def __init__(self, path: Path, logged_channel: str | None, clock: Clock) -> None:
        self._source = ReplaySource(path, logged_channel=logged_channel)
        self._pacer = Pacer(clock, 1.0)

    async def frames(self, stop: asyncio.Event) -> AsyncIterator[FrameLike]:
        async for frame in paced(self._source.frames(), self._pacer):
            if stop.is_set():
                return
            yield frame

    def close(self) -> None:
        """Nothing stays open between frames."""

    @property
    def backlog(self) -> int:
        return 0

    @property
    def dropped(self) -> int:
        return 0

    @property
    def malformed_lines(self) -> int:
        return self._source.stats.malformed_lines


SourceOpener = Callable[[BusConfig, list[tuple[int, bool]]], FrameSource]


def bus_source_opener(config_dir: Path, clock: Clock) -> SourceOpener:
    """Opens a configured bus; ``can_ids`` are the ids its DBCs decode (kernel filter)."""

    def open_source(bus: BusConfig, can_ids: list[tuple[int, bool]]) -> FrameSource:
        if bus.interface == "replay":
            path = Path(bus.channel)
            path = path if path.is_absolute() else config_dir / path
            return RecordingBus(path, bus.logged_channel, clock)
        kwargs: dict[str, Any] = {} if bus.bitrate is None else {"bitrate": bus.bitrate}
        return BusSource(bus.interface, bus.channel, can_ids, **kwargs)

    return open_source
