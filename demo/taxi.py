"""One simulated taxi that drives its lap again and again in one agent process:
``python -m demo.taxi --config agent.toml``.

The agent is the one ``edge-agent run`` starts (:func:`edge_agent.daemon.open_agent`, the
same outbox, uplink, health and drain), with one part swapped: each replay bus is a
:class:`LoopingRecording`, which plays the drive's frames at recorded pace and, at the
end of the drive, starts over with every timestamp moved on by the lap's length; the
track's fixes (``[gnss] nmea``) loop with it (:class:`LoopingTrack`). The whole drive is
also moved to the wall clock when the agent starts, so records look live whenever it was
generated. The taxi's connection and its outbox never restart between laps, so it stays
online, and every record goes through the one outbox once, as in any ``run``.

The lap is read from ``drive.expected.json`` beside the recording (``start_epoch_s``,
``duration_s``, written by ``hw_fixtures.generate``); frames and fixes at or after the
lap's end are left out, so two laps never overlap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from daemon_kit.logs import LEVELS, bind, configure_logging
from edge_agent.clock import Clock, SystemClock
from edge_agent.config import AgentConfig, BusConfig, load_config
from edge_agent.daemon import open_agent
from edge_agent.errors import AgentError
from edge_agent.feed import (
    FixMerge,
    FrameSource,
    RecordingBus,
    SourceOpener,
    bus_source_opener,
    paced,
)
from edge_agent.health import config_hash
from edge_agent.nmea import read_nmea
from edge_agent.sources import CanFrame, FrameLike
from protocol.records import GnssFix


@dataclass(frozen=True)
class Lap:
    """Where the drive starts (Unix seconds, its own clock), how long one lap is, and
    how far every lap is moved (to the wall clock at the agent's start)."""

    start_s: float
    length_s: float
    shift_s: float = 0.0

    @classmethod
    def of_drive(cls, recording: Path, now_s: float) -> Lap:
        truth = recording.parent / "drive.expected.json"
        try:
            doc = json.loads(truth.read_text())
            start, length = float(doc["start_epoch_s"]), float(doc["duration_s"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AgentError(
                f"{truth}: cannot read the lap's start_epoch_s and duration_s: {exc}"
            ) from None
        if not length > 0:
            raise AgentError(f"{truth}: key 'duration_s' must be above 0, got {length}")
        return cls(start, length, now_s - start)

    def offset_s(self, lap: int) -> float:
        return self.shift_s + lap * self.length_s

    def offset_ms(self, lap: int) -> int:
        """In whole milliseconds, each lap exactly the lap's length after the one before."""
        return round(self.shift_s * 1000) + lap * round(self.length_s * 1000)

    def within(self, stamp_s: float) -> bool:
        return 0 <= stamp_s - self.start_s < self.length_s


class LoopingRecording(RecordingBus):
    """A candump recording played as a live bus, lap after lap, at its recorded pace."""

    def __init__(self, path: Path, logged_channel: str | None, clock: Clock, lap: Lap) -> None:
        super().__init__(path, logged_channel, clock)
        self._lap = lap
        self.laps = 0  # laps begun

    def _laps(self) -> Iterator[FrameLike]:
        lap = self._lap
        while True:
            offset = lap.offset_s(self.laps)
            self.laps += 1
            for frame in self._source.frames():
                if lap.within(frame.timestamp):
                    yield _moved(frame, offset)

    async def frames(self, stop: asyncio.Event) -> AsyncIterator[FrameLike]:
        async for frame in paced(self._laps(), self._pacer):
            if stop.is_set():
                return
            yield frame


def _moved(frame: FrameLike, offset_s: float) -> CanFrame:
    return CanFrame(
        frame.timestamp + offset_s,
        frame.arbitration_id,
        bytes(frame.data),
        str(frame.channel),
        frame.is_extended_id,
        frame.is_error_frame,
        frame.is_remote_frame,
    )


class LoopingTrack(FixMerge):
    """The track's fixes, lap after lap, handed out in time order up to a frame's time."""

    def __init__(self, fixes: Iterable[GnssFix], lap: Lap) -> None:
        super().__init__()
        self._one = sorted((f for f in fixes if lap.within(f.time_ms / 1000)), key=_time)
        self._lap = lap
        self._index = 0
        self._laps = 0

    def _next_ms(self) -> int:
        return self._one[self._index].time_ms + self._lap.offset_ms(self._laps)

    def until(self, stamp_s: float) -> list[GnssFix]:
        out: list[GnssFix] = []
        limit_ms = stamp_s * 1000
        while self._one and self._next_ms() <= limit_ms:
            out.append(replace(self._one[self._index], time_ms=self._next_ms()))
            self._index += 1
            if self._index == len(self._one):
                self._index, self._laps = 0, self._laps + 1
        return out

    def __len__(self) -> int:
        return len(self._one)


def _time(fix: GnssFix) -> int:
    return fix.time_ms


def looping_opener(config_dir: Path, clock: Clock, lap: Lap) -> SourceOpener:
    """Replay buses loop; any other bus opens as in ``run``."""
    others = bus_source_opener(config_dir, clock)

    def open_source(bus: BusConfig, can_ids: list[tuple[int, bool]]) -> FrameSource:
        if bus.interface != "replay":
            return others(bus, can_ids)
        return LoopingRecording(_recording(bus, config_dir), bus.logged_channel, clock, lap)

    return open_source


def _recording(bus: BusConfig, config_dir: Path) -> Path:
    path = Path(bus.channel)
    return path if path.is_absolute() else config_dir / path


@dataclass(frozen=True)
class TaxiSetup:
    """What the looping agent needs besides its config, read before the event loop runs."""

    config_dir: Path
    lap: Lap
    fixes: list[GnssFix]
    config_hash: str

    @classmethod
    def read(cls, config: AgentConfig, config_path: Path) -> TaxiSetup:
        config_dir = config_path.resolve().parent
        replays = [b for b in config.bus if b.interface == "replay"]
        if not replays:
            raise AgentError(f"{config_path}: no bus with interface 'replay' to loop")
        lap = Lap.of_drive(_recording(replays[0], config_dir), time.time())
        track = None if config.gnss is None else config.gnss.nmea_path(config_dir)
        fixes = [] if track is None else list(read_nmea(track))
        return cls(config_dir, lap, fixes, config_hash(config_path))


async def run_taxi(config: AgentConfig, setup: TaxiSetup) -> int:
    """The agent until SIGTERM/SIGINT, its replay buses and track looping."""
    clock = SystemClock()
    bind(vehicle=f"{config.vehicle.fleet}/{config.vehicle.id}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with open_agent(
            config,
            setup.config_dir,
            clock=clock,
            open_source=looping_opener(setup.config_dir, clock, setup.lap),
            config_hash=setup.config_hash,
            stop=stop,
        ) as agent:
            # The agent's reader takes its fixes when it starts, in main().
            agent.fixes = LoopingTrack(setup.fixes, setup.lap)
            return await agent.main()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m demo.taxi", description="one simulated taxi, driving its lap in a loop"
    )
    parser.add_argument("--config", type=Path, required=True, help="the agent's config file")
    parser.add_argument("--log-level", choices=LEVELS, default="info")
    args = parser.parse_args(argv)
    configure_logging(args.log_level.upper())
    try:
        config = load_config(args.config)
        return asyncio.run(run_taxi(config, TaxiSetup.read(config, args.config)))
    except AgentError as exc:
        print(f"demo.taxi: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
