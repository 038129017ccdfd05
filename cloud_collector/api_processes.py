"""The collector's API processes (``[http] processes`` > 0): started, watched, restarted
and stopped by the collector, which keeps ingest (and the watchdog, retention and the
``metrics_listen`` listener) in its own process.

Each API process (``cloud_collector.api_process``) is ``python -m`` of this package with
the bound listening socket and its end of a control channel (``api_channel``) as inherited
file descriptors: the port stays bound by the collector across restarts, so a connection
arriving while a process restarts waits in the socket's backlog. One that dies is logged
and started again (at once after it had served; with a growing delay while it fails before
serving, and after ``START_ATTEMPTS`` such failures in a row the collector stops with a
``ServiceError``). On ``stop`` each gets SIGTERM, and SIGKILL after ``STOP_S``. If the
collector itself dies, they follow (``PR_SET_PDEATHSIG`` and the channel's end of file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Final

from cloud_collector.api_channel import (
    STATE_EVERY_S,
    HttpFigures,
    Started,
    State,
    frame,
    read_frame,
)
from cloud_collector.config import CollectorConfig
from cloud_collector.errors import ServiceError
from cloud_collector.metrics import IngestMetrics

log = logging.getLogger(__name__)

START_ATTEMPTS: Final = 5
RESTART_MIN_S: Final = 0.2
RESTART_MAX_S: Final = 10.0
# uvicorn's graceful shutdown (5 s) and a margin.
STOP_S: Final = 8.0


def describe_exit(code: int) -> str:
    """``exit code 1`` or ``killed by SIGKILL``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class ApiProcesses:
    """``cfg.http.processes`` API processes on ``listener``; ``on_started`` runs once,
    when the first of them serves. ``figures`` are their HTTP figures together."""

    def __init__(
        self,
        cfg: CollectorConfig,
        listener: socket.socket,
        ingest: IngestMetrics,
        on_started: Callable[[], object] = lambda: None,
    ) -> None:
        self._cfg = cfg
        self._listener = listener
        self._ingest = ingest
        self._on_started: Callable[[], object] | None = on_started
        self._live: dict[int, HttpFigures] = {}  # by slot
        self._retired: Counter[str] = Counter()  # 429s of processes that ended
        self.pids: dict[int, int] = {}  # by slot, while running
        self.restarts = 0

    def figures(self) -> tuple[int, Counter[str]]:
        refused = Counter(self._retired)
        in_progress = 0
        for figures in self._live.values():
            in_progress += figures.in_progress
            refused.update(figures.refused)
        return in_progress, refused

    async def run(self, stop: asyncio.Event) -> None:
        """Keep them running until ``stop``; then stop them."""
        async with asyncio.TaskGroup() as tg:
            for slot in range(self._cfg.http.processes):
                tg.create_task(self._keep(slot, stop), name=f"api process {slot}")

    async def _keep(self, slot: int, stop: asyncio.Event) -> None:
        failures = 0
        delay = RESTART_MIN_S
        while not stop.is_set():
            served, code = await self._once(slot, stop)
            if stop.is_set():
                return
            failures = 0 if served else failures + 1
            if failures >= START_ATTEMPTS:
                stop.set()
                raise ServiceError(
                    f"http: API process {slot} ended before serving {failures} times in a row"
                    f" ({describe_exit(code)}; its log lines are above)"
                )
            log.warning("http: API process %d %s; starting it again", slot, describe_exit(code))
            self.restarts += 1
            delay = RESTART_MIN_S if served else min(delay * 2, RESTART_MAX_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    def _spawn(self, child_end: socket.socket) -> subprocess.Popen[bytes]:
        fds = (child_end.fileno(), self._listener.fileno())
        return subprocess.Popen(
            [sys.executable, "-m", "cloud_collector.api_process",
             "--control-fd", str(fds[0]), "--listen-fd", str(fds[1]),
             "--parent", str(os.getpid())],
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    async def _once(self, slot: int, stop: asyncio.Event) -> tuple[bool, int]:
        """One API process from start to end: (whether it served, its exit code)."""
        parent_end, child_end = socket.socketpair()
        try:
            proc = self._spawn(child_end)
        finally:
            child_end.close()
        self.pids[slot] = proc.pid
        served = asyncio.Event()
        reader, writer = await asyncio.open_unix_connection(sock=parent_end)
        writer.write(frame(self._cfg))
        tasks = [
            asyncio.create_task(self._listen(slot, reader, served)),
            asyncio.create_task(stop.wait()),
            asyncio.create_task(self._feed(writer)),
        ]
        try:
            await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            code = await _end(proc)
            writer.close()
            self.pids.pop(slot, None)
            gone = self._live.pop(slot, None)
            if gone is not None:
                self._retired.update(gone.refused)
        return served.is_set(), code

    async def _listen(self, slot: int, reader: asyncio.StreamReader, served: asyncio.Event) -> None:
        """The API process's messages until its end of file (it ended)."""
        while (message := await read_frame(reader)) is not None:
            if isinstance(message, HttpFigures):
                self._live[slot] = message
            elif isinstance(message, Started):
                served.set()
                log.info("http: API process %d (pid %d) serving", slot, message.pid)
                if self._on_started is not None:
                    self._on_started()
                    self._on_started = None

    async def _feed(self, writer: asyncio.StreamWriter) -> None:
        """Ingest's state to the API process, every ``STATE_EVERY_S``."""
        while True:
            writer.write(frame(State(self._ingest, HttpFigures(*self.figures()))))
            try:
                await writer.drain()
            except ConnectionError:
                return
            await asyncio.sleep(STATE_EVERY_S)


async def _end(proc: subprocess.Popen[bytes]) -> int:
    """Stop ``proc`` (SIGTERM, SIGKILL after ``STOP_S``) unless it ended; its exit code."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return await asyncio.to_thread(proc.wait, STOP_S)
    except subprocess.TimeoutExpired:
        log.warning("http: API process (pid %d) still running after SIGTERM: killed", proc.pid)
        proc.kill()
        return await asyncio.to_thread(proc.wait)
