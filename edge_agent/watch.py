"""systemd's watchdog and STATUS= lines, as jobs of the agent's scheduler.

The watchdog rule is ``daemon_kit.sdnotify.WatchdogGate``'s: ping only while the pipeline
moves. Progress is frames processed + pipeline commits + acked batches + an idle heartbeat
that ticks only on a turn with no work waiting (no reader holds an unprocessed frame and
no outbox append is in progress). An append taking longer than the stall period freezes
the value: frames piling up in memory behind a hung outbox are not progress.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from daemon_kit.sdnotify import Notifier, WatchdogGate

MAIN_TICK_S = 0.5  # longest gap between two watchdog observations
STATUS_INTERVAL_S = 5.0  # sd_notify STATUS= updates
FIRST_STATUS_S = 2.0  # a frame rate needs some time


@dataclass
class Progress:
    frames: int
    commits: int
    acked_batches: int
    work_waiting: bool  # a reader holds a frame, or an append is in progress
    flushing_since: float | None  # monotonic start of an append in progress


@dataclass
class Watch:
    notifier: Notifier
    progress: Callable[[], Progress]
    status_line: Callable[[float], Awaitable[str]]  # frames/s -> the STATUS= text

    def __post_init__(self) -> None:
        interval = self.notifier.watchdog_interval_s
        self.gate: WatchdogGate | None = None
        self.tick_s = MAIN_TICK_S
        if interval is not None:
            # 2/3 of WatchdogSec (20 s of 30 s): a stall is caught within one period.
            self.gate = WatchdogGate(stall_after_s=interval * 4 / 3, ping_every_s=interval)
            self.tick_s = min(MAIN_TICK_S, interval / 4)
        self._heartbeat = 0
        self._last_value = 0
        self._last_rate: tuple[float, int] | None = None

    def first_status_at(self, now: float) -> float:
        """When the first STATUS= line is due; its rate counts from ``now``."""
        self._last_rate = (now, self.progress().frames)
        return now + FIRST_STATUS_S

    async def watchdog(self, now: float) -> float:
        """Scheduler job: observe progress, ping when the gate says so."""
        gate = self.gate
        if gate is not None and gate.observe(now, self._value(now, gate.stall_after_s)):
            self.notifier.watchdog()
        return now + self.tick_s

    def _value(self, now: float, stuck_after_s: float) -> int:
        p = self.progress()
        if p.flushing_since is not None and now - p.flushing_since > stuck_after_s:
            return self._last_value
        if not p.work_waiting:
            self._heartbeat += 1
        self._last_value = p.frames + p.commits + p.acked_batches + self._heartbeat
        return self._last_value

    async def status(self, now: float) -> float:
        """Scheduler job: a readable STATUS= line with the frame rate since the last one."""
        frames = self.progress().frames
        before = self._last_rate or (now, frames)
        rate = (frames - before[1]) / max(now - before[0], 1e-3)
        self._last_rate = (now, frames)
        self.notifier.status(await self.status_line(rate))
        return now + STATUS_INTERVAL_S
