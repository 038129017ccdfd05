"""When a simulated taxi counts as online: its outbox holds an acknowledged batch.

The broker accepting the taxi's connection is not enough for an operator (the dashboard
lists a vehicle once the collector stored something of it), so the demo watches the one
figure that proves the whole path works: the outbox's highest acknowledged seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from edge_agent.errors import OutboxError
from edge_agent.outbox_status import read_status


def highest_acked_seq(outbox: Path) -> int:
    """0 while the outbox is missing, being created, or has nothing acknowledged yet."""
    try:
        report = read_status(outbox, int(time.time() * 1000))
    except OutboxError:
        return 0
    seq = report.get("highest_acked_seq")
    return seq if isinstance(seq, int) else 0


async def wait_first_ack(outbox: Path, stop: asyncio.Event, poll_s: float = 0.5) -> bool:
    """True once ``outbox`` holds an acknowledged batch; False if ``stop`` is set first."""
    while not stop.is_set():
        if await asyncio.to_thread(highest_acked_seq, outbox) > 0:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_s)
    return False
