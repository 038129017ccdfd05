"""``edge-agent replay``: a recording through the whole agent, resumable, until acked.

Every append of a replay stores, in the same transaction, a checkpoint
(:mod:`edge_agent.checkpoint`): how many frames of the recording are behind it and the
pipeline's state after them. A replay killed at any moment restarts from exactly that
point with exactly that state, so the outbox ends up with what one uninterrupted run
would have produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.checkpoint import Checkpoint
from edge_agent.clock import Clock
from edge_agent.config import AgentConfig
from edge_agent.errors import AgentError
from edge_agent.feed import FixMerge, FrameFeed, Pacer, paced, route_by_config
from edge_agent.outbox import Records
from edge_agent.pipeline import Pipeline
from edge_agent.sources import FrameLike, ReplaySource
from edge_agent.uplink import Uplink
from edge_agent.writer import OutboxWriter

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
FLUSH_CHECK_FRAMES = 256  # how often the reader looks at the clock and the stop flag
# While waiting for acks, how often a write held back by a full disk is retried.
HELD_RETRY_S = 1.0


class ReplayTimeoutError(AgentError):
    """A replay's batches were not all acknowledged end to end in time."""


@dataclass
class ReplayJob:
    recording: Path
    channel: str | None = None
    speed: float = 1.0
    timeout_s: float = 120.0


@dataclass
class ReplayReader:
    job: ReplayJob
    config: AgentConfig
    pipeline: Pipeline
    writer: OutboxWriter
    clock: Clock
    fixes: FixMerge
    stop: asyncio.Event
    urgent: asyncio.Event = field(default_factory=asyncio.Event)
    frames_read: int = 0  # by this process (a resumed replay skips the ones already done)
    source: ReplaySource | None = None

    @property
    def malformed_lines(self) -> int:
        return 0 if self.source is None else self.source.stats.malformed_lines

    async def _resume(self) -> int | None:
        """Frames already behind the stored records; None when the reading is complete."""
        stored = await self.writer.outbox.load_checkpoint()
        if stored is None:
            return 0
        cp = Checkpoint.load(stored)
        if cp.recording != str(self.job.recording.resolve()):
            if await self._first_delivered(cp):
                log.info("replay of %s acknowledged; starting %s", cp.recording, self.job.recording)
                return 0
            raise AgentError(
                f"the outbox holds a replay of {cp.recording} not yet acknowledged; finish "
                "it or use another outbox path for a different recording"
            )
        if cp.finished:
            log.info("replay already read completely; waiting for acks only")
            return None
        self.pipeline.restore(cp.pipeline)
        log.info("resuming replay after frame %d", cp.frames_done)
        return cp.frames_done

    async def _first_delivered(self, cp: Checkpoint) -> bool:
        """The earlier recording is read to its end and no batch of it is left to send: a
        new one may start, its first flush replaces the checkpoint. Staged records are not
        asked about: this run's start snapshot is one, and any left by a crash of the
        earlier run are closed and sent with the new recording's, not lost."""
        if not cp.finished or self.writer.holding():
            return False
        stats = await self.writer.outbox.stats(self.clock.wall_ms())
        return stats.pending_batches == 0

    async def read(self) -> None:
        """Feed the recording through the pipeline, resuming from the stored checkpoint."""
        start = await self._resume()
        if start is None:
            return
        route = route_by_config(self.config.bus)
        self.source = ReplaySource(self.job.recording, logged_channel=self.job.channel)
        feed = FrameFeed(self.pipeline, route, self.fixes)
        frames = start
        last_flush = self.clock.monotonic()
        pacer = Pacer(self.clock, self.job.speed)
        async for frame in paced(_after(self.source.frames(), start, feed), pacer):
            frames += 1
            self.frames_read += 1
            feed.push(frame)
            if frames % FLUSH_CHECK_FRAMES == 0:
                if self.stop.is_set():
                    break
                if self.clock.monotonic() - last_flush >= FLUSH_INTERVAL_S or self.urgent.is_set():
                    self.urgent.clear()
                    await self.flush(frames, finished=False)
                    last_flush = self.clock.monotonic()
                    await asyncio.sleep(0)
        else:
            missing = self.source.missing_channel()
            if missing is not None:
                # Before the finished checkpoint: the right channel may be replayed next.
                raise AgentError(missing)
            await self.flush(frames, finished=True)
            return
        await self.flush(frames, finished=False)

    async def flush(self, frames_done: int, *, finished: bool) -> None:
        """Store what the pipeline holds with the checkpoint after it; the state is taken
        right after the drain, with no frame processed in between."""
        drained = self.pipeline.drain(final=finished)
        recording = str(self.job.recording.resolve())
        checkpoint = Checkpoint(recording, frames_done, finished, self.pipeline.snapshot())
        await self.writer.write(drained, checkpoint.dump())


def _after(frames: Iterator[FrameLike], done: int, feed: FrameFeed) -> Iterator[FrameLike]:
    """The frames after the first ``done``; those only move the track past their time."""
    for i, frame in enumerate(frames):
        if i < done:
            feed.skip(frame)
        else:
            yield frame


@dataclass
class AckWait:
    """Waits until everything stored is acknowledged end to end."""

    writer: OutboxWriter
    uplink: Uplink
    clock: Clock
    stop: asyncio.Event

    async def all_acknowledged(self) -> bool:
        if self.writer.holding():
            return False
        stats = await self.writer.outbox.stats(self.clock.wall_ms())
        return stats.pending_batches == 0 and stats.staged_records == 0

    async def until_acked(self, timeout_s: float) -> bool:
        """True once all is acked, False on stop; TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while not await self.all_acknowledged():
                if self.stop.is_set():
                    return False
                if self.writer.holding():
                    # A full disk refused the last writes: retry them, then close what
                    # they staged, so the replay ends only once they are acked.
                    await self.writer.store(Records(), None)
                    if await self.writer.close_batches(force=True):
                        self.uplink.wake()
                await self._next_ack()
        return True

    async def _next_ack(self) -> None:
        acked = self.uplink.acked
        acked.clear()
        waits = {asyncio.ensure_future(acked.wait()), asyncio.ensure_future(self.stop.wait())}
        try:
            await asyncio.wait(waits, timeout=HELD_RETRY_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await w

    async def pending(self, timeout_s: float) -> str:
        stats = await self.writer.outbox.stats(self.clock.wall_ms())
        due = await self.writer.outbox.due_for_publish(limit=1_000_000, resend_after_ms=0)
        seqs = ranges(sorted(b.seq for b in due))
        link = "connected" if self.uplink.connected.is_set() else "not connected"
        s = self.uplink.settings
        return (
            f"replay not acknowledged after {timeout_s:g} s: {stats.pending_batches} batch(es) "
            f"pending (epoch {stats.epoch}, seqs {seqs or '-'}), {stats.staged_records} "
            f"record(s) staged, {len(self.writer.held)} held in memory for lack of disk space; "
            f"broker {s.host}:{s.port} {link}"
        )


def ranges(seqs: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1..3, 7"``: a long backlog stays one readable line."""
    runs: list[list[int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs)
