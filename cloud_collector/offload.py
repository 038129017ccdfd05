"""CPU-heavy work of the API (turning 10^4 rows into objects, encoding a large answer)
in a worker thread, one at a time.

The event loop runs ingest and /readyz too: a page of 10^4 events costs about a second of
CPU, which must not stall the loop. In a thread it yields the interpreter to the loop
every switch interval; one such thread at a time keeps the loop's share of the
interpreter at least half while the API is saturated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, TypeVar

T = TypeVar("T")

# Runs at once; more wait their turn (the HTTP limits bound how many can wait).
OFF_LOOP_SLOTS: Final = 1
_slots: asyncio.Semaphore | None = None


async def off_loop(fn: Callable[[], T]) -> T:
    """``fn()`` in a worker thread, one at a time per process."""
    global _slots  # noqa: PLW0603 - one semaphore per process, made on the first call
    if _slots is None:
        _slots = asyncio.Semaphore(OFF_LOOP_SLOTS)
    async with _slots:
        return await asyncio.to_thread(fn)
