"""What /readyz answers: the store reachable and ingest connected to MQTT, from a state
the process keeps rather than a store round trip per probe.

A probe answers from the last store check; when that is older than ``FRESH_S`` it starts
the next one in the background (one at a time, however many probes come) and still
answers at once. Probes every second from several load balancers thus cost at most one
``ping`` a second, and a probe never waits behind the store: only the very first one
waits for the first check (at most ``STALE_S``). A check still running after ``STALE_S``
is itself the answer: not ready, the store not answering. Whether MQTT is connected is a
flag in memory, read by every probe.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from cloud_collector.errors import StoreError

log = logging.getLogger(__name__)

# A store check younger than this answers a probe (seconds).
FRESH_S: Final = 1.0
# A store check running longer than this: not ready (seconds).
STALE_S: Final = 5.0
READY_BODY: Final = json.dumps({"status": "ready"}, separators=(",", ":")).encode()


def not_ready_body(problems: list[str]) -> bytes:
    return json.dumps({"status": "not ready", "problems": problems}, separators=(",", ":")).encode()


class Readiness:
    """The process's readiness: ``ping`` reaches the store, ``mqtt_ready`` says whether
    ingest is connected (see the module doc)."""

    def __init__(
        self,
        ping: Callable[[], Awaitable[None]],
        mqtt_ready: Callable[[], bool],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        fresh_s: float = FRESH_S,
        stale_s: float = STALE_S,
    ) -> None:
        self._ping = ping
        self._mqtt_ready = mqtt_ready
        self._monotonic = monotonic
        self._fresh_s = fresh_s
        self._stale_s = stale_s
        self._store_problem: str | None = None
        self._checked_at: float | None = None  # when the last check ended
        self._check: asyncio.Task[None] | None = None
        self._check_started = 0.0

    async def problems(self) -> list[str]:
        """What keeps the process from being ready; empty: ready."""
        now = self._monotonic()
        if self._checked_at is None:
            # The first probe: there is no answer to give yet but the check's.
            await asyncio.wait((self._start(now),), timeout=self._stale_s)
        elif now - self._checked_at >= self._fresh_s:
            self._start(now)
        return self.known()

    def known(self) -> list[str]:
        """The problems as last seen, without starting a check."""
        now = self._monotonic()
        running = self._check is not None and not self._check.done()
        problems = []
        if running and now - self._check_started >= self._stale_s:
            problems.append(f"store: no answer for {now - self._check_started:.0f} s")
        elif self._checked_at is None:
            problems.append("store: not checked yet")
        elif self._store_problem is not None:
            problems.append(self._store_problem)
        if not self._mqtt_ready():
            problems.append("mqtt: not connected")
        return problems

    def _start(self, now: float) -> asyncio.Task[None]:
        if self._check is None or self._check.done():
            self._check_started = now
            self._check = asyncio.get_running_loop().create_task(self._run_check())
        return self._check

    async def _run_check(self) -> None:
        try:
            await self._ping()
        except StoreError as exc:
            problem: str | None = f"store: {type(exc).__name__}"
        except Exception as exc:  # noqa: BLE001 - any failure is "not ready", never a lost task error
            log.warning("readiness: the store check failed: %r", exc)
            problem = f"store: {type(exc).__name__}"
        else:
            problem = None
        self._store_problem = problem
        self._checked_at = self._monotonic()
