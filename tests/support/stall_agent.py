"""``edge-agent run`` whose pipeline stalls: for the watchdog test.

    python -m tests.support.stall_agent --config agent.toml --stall-after 3000

Runs the real agent with every bus read through :class:`StallingSource`: once the buses
together delivered ``--stall-after`` frames, each reader holds its next frame without
handing it on until shutdown, so the pipeline stands still while the process lives.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from daemon_kit.sdnotify import Notifier
from edge_agent.clock import SystemClock
from edge_agent.config import BusConfig, load_config
from edge_agent.daemon import run_agent
from edge_agent.feed import FrameSource, SourceOpener, bus_source_opener
from edge_agent.health import config_hash
from edge_agent.sources import FrameLike

log = logging.getLogger("stall_agent")


@dataclass
class FrameBudget:
    left: int


class StallingSource:
    """``inner`` until the shared budget is spent, then one frame held until stop."""

    def __init__(self, inner: FrameSource, budget: FrameBudget) -> None:
        self.inner = inner
        self.budget = budget
        self.holding = 0

    async def frames(self, stop: asyncio.Event) -> AsyncIterator[FrameLike]:
        async for frame in self.inner.frames(stop):
            if self.budget.left <= 0:
                log.warning("pipeline stalled on purpose")
                self.holding = 1
                await stop.wait()
                return
            self.budget.left -= 1
            yield frame

    def close(self) -> None:
        self.inner.close()

    @property
    def backlog(self) -> int:
        return self.inner.backlog + self.holding

    @property
    def dropped(self) -> int:
        return self.inner.dropped

    @property
    def malformed_lines(self) -> int:
        return self.inner.malformed_lines


def stalling_opener(opener: SourceOpener, after_frames: int) -> SourceOpener:
    budget = FrameBudget(after_frames)

    def open_source(bus: BusConfig, can_ids: list[tuple[int, bool]]) -> FrameSource:
        return StallingSource(opener(bus, can_ids), budget)

    return open_source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stall_agent")
    parser.add_argument("--config", required=True)
    parser.add_argument("--stall-after", type=int, required=True, help="frames before the stall")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    path = Path(args.config)
    config = load_config(path)
    opener = bus_source_opener(path.resolve().parent, SystemClock())
    return asyncio.run(
        run_agent(
            config,
            path.resolve().parent,
            None,
            notifier=Notifier.from_env(os.environ),
            config_hash=config_hash(path),
            open_source=stalling_opener(opener, args.stall_after),
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
