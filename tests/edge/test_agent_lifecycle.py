"""The agent's life cycle in-process: a real outbox in tmp_path, a fake link, a fake clock.

Start, frames in, batches out to the link, acks back, a clean stop that drains, and a
replay interrupted and restarted that ends with exactly what one run would produce.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_agent.config import BusConfig, load_config
from edge_agent.daemon import open_agent
from edge_agent.errors import AgentError
from edge_agent.feed import FrameSource
from edge_agent.health import REASON_REPLAY_DONE, REASON_STOP
from edge_agent.outbox import Outbox
from edge_agent.outbox_status import format_human, read_status
from edge_agent.replay import ReplayJob
from edge_agent.sources import CanFrame, FrameLike
from harness.agent import expected
from harness.mosquitto import free_port
from protocol.records import Event, Health
from tests.support.fake_link import FakeLink
from tests.support.offline_agent import write_config

DEADLINE_S = 30.0


class FakeClock:
    """Real time plus every sleep, which returns at once: a paced recording runs at full
    speed while the agent's deadlines still come in order. Wall time follows it."""

    def __init__(self) -> None:
        self.skipped = 0.0
        self.t0 = time.monotonic()

    @property
    def t(self) -> float:
        return 1000.0 + time.monotonic() - self.t0 + self.skipped

    def monotonic(self) -> float:
        return self.t

    def raw_wall_ms(self) -> int:
        return 1_772_436_600_000 + round(self.t * 1000)

    def wall_ms(self) -> int:
        return self.raw_wall_ms()

    async def sleep(self, seconds: float) -> None:
        self.skipped += max(seconds, 0.0)
        await asyncio.sleep(0)


async def until(condition: Callable[[], object]) -> None:
    """Polls state another task changes, for at most DEADLINE_S."""
    async with asyncio.timeout(DEADLINE_S):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


async def outbox_stats(config_path: Path) -> tuple[int, int, bytes | None]:
    outbox = await Outbox.open(
        config_path.parent / "outbox.sqlite3", fleet_id="test-fleet", vehicle_id="taxi-7"
    )
    try:
        stats = await outbox.stats(0)
        return stats.pending_batches, stats.staged_records, await outbox.load_checkpoint()
    finally:
        await outbox.close()


def health(link: FakeLink, reason: str) -> dict[str, object]:
    snapshots = [h for h in link.records("health") if isinstance(h, Health)]
    found = [h.values for h in snapshots if h.values["health_reason"] == reason]
    assert found, [h.values["health_reason"] for h in snapshots]
    return dict(found[-1])


async def test_run_streams_to_the_link_and_a_clean_stop_drains(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    config = load_config(config_path)
    link = FakeLink()
    clock = FakeClock()
    async with open_agent(config, tmp_path, clock=clock, connector=link.connect) as agent:
        main = asyncio.create_task(agent.main())
        await until(lambda: link.records("events") and agent.pipeline.frames > 1000)
        await until(lambda: agent.uplink.counters.acked_batches > 0)
        agent.stop.set()
        assert await main == 0
        found = agent.events_found
    assert found > 0
    events = [e for e in link.records("events") if isinstance(e, Event)]
    assert len(events) == found  # every event found was stored, closed and published
    assert health(link, REASON_STOP)["agent_mode"] == "run"
    pending, staged, checkpoint = await outbox_stats(config_path)
    assert (pending, staged, checkpoint) == (0, 0, None)  # drained and all acked


async def _replay(config_path: Path, link: FakeLink, stop_after_frames: int | None) -> int:
    config = load_config(config_path)
    job = ReplayJob(config_path.parent / "drive.log", speed=0, timeout_s=DEADLINE_S)
    async with open_agent(config, config_path.parent, job, connector=link.connect) as agent:
        main = asyncio.create_task(agent.main())
        if stop_after_frames is not None:
            await until(lambda: agent.pipeline.frames >= stop_after_frames)
            agent.stop.set()
        return await main


async def test_an_interrupted_replay_resumes_and_delivers_exactly_once(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    link = FakeLink()
    assert await _replay(config_path, link, stop_after_frames=3000) == 1
    _, _, checkpoint = await outbox_stats(config_path)
    assert checkpoint is not None  # the interruption left a checkpoint behind
    first = len(link.batches)
    assert await _replay(config_path, link, stop_after_frames=None) == 0
    assert len(link.batches) > first
    want = expected(config_path, tmp_path / "drive.log")
    got_events = Counter(
        (e.type, e.time_ms) for e in link.records("events") if isinstance(e, Event)
    )
    assert got_events == want.events
    samples: Counter[tuple[str, int]] = Counter()
    for series in link.records("signals"):
        for t in series.times_ms:  # type: ignore[attr-defined]
            samples[(series.name, t)] += 1  # type: ignore[attr-defined]
    assert samples == want.samples
    assert health(link, REASON_REPLAY_DONE)["replay_malformed_lines"] == 0


async def test_replay_reports_malformed_lines_in_health(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, seconds=3.0)
    recording = tmp_path / "drive.log"
    lines = recording.read_text().splitlines()
    lines[5:5] = ["this is not candump", "(1.0) can0 XYZ#00"]
    recording.write_text("\n".join(lines) + "\n")
    link = FakeLink()
    assert await _replay(config_path, link, stop_after_frames=None) == 0
    assert health(link, REASON_REPLAY_DONE)["replay_malformed_lines"] == 2


@dataclass
class DroppingSource:
    """A bus whose reader's queue overflowed: a few frames came through, 7 were dropped."""

    frames_given: int = 50

    async def frames(self, stop: asyncio.Event) -> AsyncIterator[FrameLike]:
        for i in range(self.frames_given):
            yield CanFrame(1_772_436_600 + i * 0.01, 0x386, bytes(8), "can1")
        await stop.wait()

    def close(self) -> None:
        pass

    @property
    def backlog(self) -> int:
        return 0

    @property
    def dropped(self) -> int:
        return 7

    @property
    def malformed_lines(self) -> int:
        return 0


async def test_queue_drops_of_a_bus_reach_health(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, seconds=1.0))
    link = FakeLink()
    opened: list[str] = []

    def open_source(bus: BusConfig, can_ids: list[tuple[int, bool]]) -> FrameSource:
        opened.append(bus.name)
        return DroppingSource()

    async with open_agent(
        config, tmp_path, connector=link.connect, open_source=open_source, clock=FakeClock()
    ) as agent:
        main = asyncio.create_task(agent.main())
        await until(lambda: agent.pipeline.frames >= 100)
        agent.stop.set()
        assert await main == 0
    assert sorted(opened) == ["camera", "vehicle"]
    snapshot = health(link, REASON_STOP)
    assert snapshot["bus_camera_dropped"] == 7
    assert snapshot["bus_vehicle_dropped"] == 7
    assert snapshot["source_dropped_frames"] == 14


async def test_run_with_gpsd_unreachable_reports_it_in_health(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    config = load_config(write_config(tmp_path, 1.0, f'[gnss]\ngpsd = "127.0.0.1:{port}"\n'))
    link = FakeLink()
    async with open_agent(
        config,
        tmp_path,
        connector=link.connect,
        open_source=lambda bus, ids: DroppingSource(),
        clock=FakeClock(),
    ) as agent:
        main = asyncio.create_task(agent.main())
        await until(lambda: agent.pipeline.frames >= 100)
        agent.stop.set()
        assert await main == 0
    snapshot = health(link, REASON_STOP)
    assert snapshot["gnss_mode"] == 0
    assert snapshot["gnss_connected"] == 0
    assert snapshot["gnss_fix"] is False


async def test_a_clean_stop_waits_for_the_acks_of_its_last_publish(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    config = load_config(config_path)
    link = FakeLink(ack_delay_s=0.3)
    async with open_agent(config, tmp_path, clock=FakeClock(), connector=link.connect) as agent:
        main = asyncio.create_task(agent.main())
        await until(lambda: agent.uplink.counters.acked_batches > 0)
        agent.stop.set()
        assert await main == 0
    pending, staged, _ = await outbox_stats(config_path)
    assert (pending, staged) == (0, 0)
    last_stop = read_status(tmp_path / "outbox.sqlite3", 0)["last_stop"]
    assert isinstance(last_stop, dict)
    assert last_stop["acked_during_drain"] >= 1  # the batches closed by the drain itself
    assert (last_stop["pending_batches"], last_stop["connected"]) == (0, True)
    human = format_human(read_status(tmp_path / "outbox.sqlite3", 0), 0)
    assert f"{last_stop['acked_during_drain']} batches acked during the drain" in human


async def test_a_second_recording_replays_once_the_first_is_acknowledged(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, seconds=3.0)
    link = FakeLink()
    assert await _replay(config_path, link, stop_after_frames=None) == 0
    first = len(link.batches)
    shutil.copy(tmp_path / "drive.log", tmp_path / "drive2.log")
    config = load_config(config_path)
    job = ReplayJob(tmp_path / "drive2.log", speed=0, timeout_s=DEADLINE_S)
    async with open_agent(config, tmp_path, job, connector=link.connect) as agent:
        assert await agent.main() == 0
        assert agent.frames_read > 0  # read from its start, not resumed past its end
    assert len(link.batches) > first


async def test_a_second_recording_is_refused_while_the_first_is_pending(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, seconds=3.0)
    config = load_config(config_path)
    down = FakeLink(up=False)
    job = ReplayJob(tmp_path / "drive.log", speed=0, timeout_s=1.0)
    async with open_agent(config, tmp_path, job, connector=down.connect) as agent:
        assert await agent.main() == 1  # not acknowledged in time: its batches stay
    assert (await outbox_stats(config_path))[0] > 0
    shutil.copy(tmp_path / "drive.log", tmp_path / "drive2.log")
    second = ReplayJob(tmp_path / "drive2.log", speed=0, timeout_s=DEADLINE_S)
    with pytest.raises(AgentError, match="not yet acknowledged"):
        async with open_agent(config, tmp_path, second, connector=FakeLink().connect) as agent:
            await agent.main()
