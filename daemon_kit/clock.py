"""The clocks both services read, behind one interface a test can replace.

Wall time only stamps things (records, acks, presence); deadlines and rates use the
monotonic clock, which never steps. Each service takes a :class:`Clock` by construction;
the edge agent's adds a guard for a gateway whose wall clock is wrong
(``edge_agent.clock``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


def wall_ms() -> int:
    """The system clock, ms since the Unix epoch, as it is (it may step, or be wrong)."""
    return time.time_ns() // 1_000_000


class Clock(Protocol):
    """Wall time to stamp, monotonic time for deadlines, and a sleep on the same clock."""

    def wall_ms(self) -> int: ...
    def monotonic(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clocks."""

    def wall_ms(self) -> int:
        return wall_ms()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
