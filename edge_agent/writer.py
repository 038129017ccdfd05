"""Everything the agent writes to its outbox goes through one :class:`OutboxWriter`.

It holds records in memory while the disk is full (a restart would find the same full
disk and lose what the pipeline holds), counts commits for the watchdog, and knows when
the batches it staged are due to close, so the closer runs at those deadlines instead of
polling.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_agent.clock import Clock, clamp_records
from edge_agent.holding import HoldingArea
from edge_agent.outbox import Outbox, OutboxFullError, Records
from edge_agent.pipeline import Drained
from protocol.topics import Channel

log = logging.getLogger(__name__)

# With no close deadline known, the closer still looks this often. Deadlines come from
# the first record staged in an empty lane and from what a close left staged (ages are
# on the outbox's monotonic clock), so this is only a safety net.
CLOSE_FALLBACK_S = 30.0
# After a close refused by a full disk.
CLOSE_RETRY_S = 1.0
# A deadline computed on the monotonic clock meets an age measured on the wall clock.
CLOSE_MARGIN_S = 0.01


@dataclass
class OutboxWriter:
    outbox: Outbox
    clock: Clock
    held: HoldingArea = field(init=False)
    disk_full: bool = False  # the last outbox write failed for lack of space
    commits: int = 0  # appends of pipeline records (health snapshots not counted)
    flushing_since: float | None = None  # monotonic start of an append in progress
    # Told each new close deadline (monotonic), so the closer can run then.
    on_deadline: Callable[[float], None] = lambda _at: None
    # Per lane, the monotonic close deadline of its oldest staged record: one close per
    # batch age, not one per write (a lane due by age closes whole).
    _close_at: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.held = HoldingArea(self.outbox.policy.is_urgent)

    def holding(self) -> bool:
        return self.held.checkpoint is not None or len(self.held) > 0

    async def write(self, drained: Drained, checkpoint: bytes | None = None) -> None:
        """Store what the pipeline handed over, in one transaction with ``checkpoint``."""
        records = Records(
            events=drained.events,
            signals=drained.signals,
            gnss=drained.fixes,
            frames=drained.frames,
        )
        self.flushing_since = self.clock.monotonic()
        try:
            # A wall clock before 1970 stamps live frames with negative times, which the
            # outbox would refuse as a whole: keep the records, clamped (health flags it).
            stored = await self.store(clamp_records(records), checkpoint)
        finally:
            self.flushing_since = None
        if stored and drained:
            self.commits += 1

    async def store(self, records: Records, checkpoint: bytes | None) -> bool:
        """Append ``records`` after whatever is held from earlier writes; on a full disk
        hold them in memory instead. Returns whether they were written."""
        held = self.held
        if self.holding():
            held.add(records, checkpoint)
            records, checkpoint = held.take()
        try:
            await self.outbox.append(records, self.clock.wall_ms(), checkpoint)
        except OutboxFullError as exc:
            held.add(records, checkpoint)
            if not self.disk_full:
                log.error(
                    "DISK FULL: %s; records are held in memory (up to %d, then the "
                    "cheapest are dropped) until there is room again",
                    exc,
                    held.max_records,
                )
            self.disk_full = True
            return False
        if self.disk_full:
            log.warning(
                "outbox writable again: held records written; %d dropped while the disk was full",
                held.dropped,
            )
        self.disk_full = False
        self._schedule_close(records)
        return True

    def _schedule_close(self, records: Records) -> None:
        policy = self.outbox.policy
        lanes = {Channel.HEALTH} if records.health else set()
        for event in records.events:
            lanes.add(Channel.EVENT if policy.is_urgent(event.type) else Channel.BATCH)
        if records.signals or records.gnss or records.frames:
            lanes.add(Channel.BATCH)
        now = self.clock.monotonic()
        for lane in lanes:
            if self._close_at.get(lane, now) > now:
                continue  # older records of the lane are staged: they set its deadline
            at = now + policy.max_age_ms(lane) / 1000 + CLOSE_MARGIN_S
            self._close_at[lane] = at
            self.on_deadline(at)

    async def close_batches(self, *, force: bool) -> int:
        """Close due batches; on a full disk the staged records stay staged (they are
        already stored) and are closed once there is room."""
        try:
            return await self.outbox.close_due_batches(self.clock.wall_ms(), force=force)
        except OutboxFullError as exc:
            log.debug("%s", exc)
            return 0

    async def close_due(self, now: float) -> tuple[int, float]:
        """The closer's turn: batches closed, and when to look again (monotonic)."""
        closed = await self.close_batches(force=False)
        if self.disk_full:
            return closed, now + CLOSE_RETRY_S
        self._close_at = {lane: at for lane, at in self._close_at.items() if at > now}
        left = self.outbox.next_close_in_ms  # records this close left staged
        later = [] if left is None else [now + left / 1000 + CLOSE_MARGIN_S]
        return closed, min([now + CLOSE_FALLBACK_S, *self._close_at.values(), *later])

    def next_close_at(self) -> float | None:
        return min(self._close_at.values(), default=None)
