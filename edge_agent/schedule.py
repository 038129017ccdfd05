"""One loop that runs the agent's periodic jobs at their next deadlines.

Each job does its turn and returns when it next wants to run (a monotonic time); the
loop sleeps until the earliest of those deadlines, or until :meth:`Scheduler.wake` makes
a job due at once (an urgent event, records stored, a stop). Jobs run one after the other,
never concurrently, in the order they were added.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from edge_agent.clock import Clock

Job = Callable[[float], Awaitable[float]]  # now -> next deadline, both monotonic seconds


@dataclass
class _Entry:
    job: Job
    at: float


class Scheduler:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._woken = asyncio.Event()
        self._turn = asyncio.Lock()  # held while a job runs

    def add(self, name: str, job: Job, *, at: float | None = None) -> None:
        """Run ``job`` first at ``at`` (default: now)."""
        self._entries[name] = _Entry(job, self.clock.monotonic() if at is None else at)
        self._woken.set()  # a loop already asleep recomputes its deadline

    def wake(self, name: str) -> None:
        """Run ``name`` as soon as the loop is free."""
        self.advance(name, -math.inf)

    def advance(self, name: str, at: float) -> None:
        """Run ``name`` at ``at`` if that is earlier than its deadline."""
        entry = self._entries.get(name)
        if entry is not None and at < entry.at:
            entry.at = at
            self._woken.set()

    async def remove(self, name: str) -> None:
        """No more turns of ``name``; returns once a turn in progress has ended."""
        async with self._turn:
            self._entries.pop(name, None)

    def next_deadline(self) -> float:
        return min((e.at for e in self._entries.values()), default=math.inf)

    async def run_due(self) -> None:
        """One turn: every job whose deadline passed runs once."""
        self._woken.clear()
        for entry in list(self._entries.values()):
            now = self.clock.monotonic()
            if entry.at <= now:
                async with self._turn:
                    entry.at = await entry.job(now)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set; a stop set while a job runs ends the loop after it."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                await self.run_due()
                delay = self.next_deadline() - self.clock.monotonic()
                if delay <= 0 or self._woken.is_set():
                    await asyncio.sleep(0)
                    continue
                woken = asyncio.ensure_future(self._woken.wait())
                await asyncio.wait(
                    {woken, stopping},
                    timeout=None if math.isinf(delay) else delay,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                woken.cancel()
        finally:
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopping
