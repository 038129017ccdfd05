"""The agent's scheduler: jobs run at the deadlines they return, or at once when woken."""

from __future__ import annotations

import asyncio

from edge_agent.clock import SystemClock
from edge_agent.schedule import Scheduler


class Recorder:
    def __init__(self, clock: SystemClock, every_s: float) -> None:
        self.clock = clock
        self.every_s = every_s
        self.runs: list[float] = []

    async def __call__(self, now: float) -> float:
        self.runs.append(now)
        return now + self.every_s


async def test_jobs_run_at_their_deadlines_and_when_woken() -> None:
    clock = SystemClock()
    scheduler = Scheduler(clock)
    fast, slow = Recorder(clock, 0.05), Recorder(clock, 60.0)
    scheduler.add("fast", fast)
    scheduler.add("slow", slow)
    stop = asyncio.Event()
    loop = asyncio.create_task(scheduler.run(stop))
    await asyncio.sleep(0.3)
    assert len(slow.runs) == 1  # its next deadline is a minute away
    assert 3 <= len(fast.runs) <= 8
    scheduler.wake("slow")
    await asyncio.sleep(0.02)
    assert len(slow.runs) == 2
    scheduler.advance("slow", clock.monotonic() + 0.05)
    await asyncio.sleep(0.15)
    assert len(slow.runs) == 3
    await scheduler.remove("fast")
    before = len(fast.runs)
    await asyncio.sleep(0.15)
    assert len(fast.runs) == before
    stop.set()
    await asyncio.wait_for(loop, 1.0)


async def test_a_job_added_to_a_sleeping_loop_runs_at_its_own_time() -> None:
    clock = SystemClock()
    scheduler = Scheduler(clock)
    idle = Recorder(clock, 60.0)
    scheduler.add("idle", idle)
    stop = asyncio.Event()
    loop = asyncio.create_task(scheduler.run(stop))
    await asyncio.sleep(0.05)
    late = Recorder(clock, 60.0)
    scheduler.add("late", late, at=clock.monotonic() + 0.05)
    await asyncio.sleep(0.2)
    assert len(late.runs) == 1
    stop.set()
    await asyncio.wait_for(loop, 1.0)
