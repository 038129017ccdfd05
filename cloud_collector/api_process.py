"""One API process of the collector (``[http] processes`` > 0), started by
``api_processes.ApiProcesses`` in the collector's ``run``, never by hand.

It serves the whole HTTP API on the listening socket the collector bound and handed down
(``--listen-fd``), reading the store on connections of its own, at ``[http] nice`` above
the collector's niceness: a flood of large pages costs this process's CPU and scheduling
share, not ingest's. Its config and ingest's state come over the control channel
(``api_channel``); /readyz answers from the store it reaches itself and whether ingest is
connected to MQTT (the collector's state, at most ``STATE_EVERY_S`` old).

It ends on SIGTERM (draining its requests), when the control channel closes, and when the
collector dies (``PR_SET_PDEATHSIG``): never an orphan holding the port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from cloud_collector.api_channel import (
    STATE_EVERY_S,
    HttpFigures,
    Started,
    State,
    frame,
    read_frame,
    read_frame_blocking,
)
from cloud_collector.config import CollectorConfig, config_secrets
from cloud_collector.errors import CollectorError
from cloud_collector.http_guard import Guard
from cloud_collector.metrics import IngestMetrics
from cloud_collector.secrets import Redactor
from cloud_collector.service import SWITCH_INTERVAL_S, http_app, http_server, quiet_outages
from cloud_collector.store import open_store
from daemon_kit.logs import configure_logging

log = logging.getLogger("cloud_collector.api_process")  # also when run as __main__

PR_SET_PDEATHSIG: Final = 1


def die_with_parent(parent: int) -> None:
    """SIGTERM to this process when ``parent`` ends (Linux); exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        raise SystemExit(f"api process: the collector (pid {parent}) is gone")


def nice_thread(increment: int, tid: int | None = None) -> None:
    """Add ``increment`` to the niceness of thread ``tid`` (default: the calling thread).
    On Linux niceness is per thread, and a new thread starts with its creator's."""
    tid = threading.get_native_id() if tid is None else tid
    with contextlib.suppress(ProcessLookupError):  # a thread that just ended
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + increment)


def _nice_worker(increment: int) -> None:
    with contextlib.suppress(OSError):  # never a broken pool for a priority
        nice_thread(increment)


def nice_workers(loop: asyncio.AbstractEventLoop, increment: int) -> None:
    """``increment`` on every thread but the calling one (the event loop's: the store's
    connection threads) and on every worker thread started later (``offload``)."""
    me = threading.get_native_id()
    try:
        for tid in (int(t) for t in os.listdir("/proc/self/task")):
            if tid != me:
                nice_thread(increment, tid)
    except OSError as exc:  # e.g. a seccomp filter without setpriority
        log.warning("api process: [http] nice: cannot lower the priority (%s); not lowered", exc)
        return
    loop.set_default_executor(
        ThreadPoolExecutor(
            thread_name_prefix="api-work", initializer=_nice_worker, initargs=(increment,)
        )
    )


async def _follow(
    reader: asyncio.StreamReader, ingest: IngestMetrics, totals: HttpFigures, stop: asyncio.Event
) -> None:
    """Take the collector's state as it comes; at end of file, stop."""
    while (message := await read_frame(reader)) is not None:
        if isinstance(message, State):
            vars(ingest).update(vars(message.ingest))
            totals.in_progress, totals.refused = message.http.as_tuple()
    log.warning("api process: the collector closed the control channel; stopping")
    stop.set()


async def _report(writer: asyncio.StreamWriter, guard: Guard, stop: asyncio.Event) -> None:
    """This process's HTTP figures to the collector, every ``STATE_EVERY_S``."""
    limits = guard.limits
    while not stop.is_set():
        try:
            writer.write(frame(HttpFigures(limits.in_progress, limits.refused)))
            await writer.drain()
        except ConnectionError:
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STATE_EVERY_S)


async def serve(cfg: CollectorConfig, listener: socket.socket, control: socket.socket) -> None:
    """The API on ``listener`` until SIGTERM or the control channel closes."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    loop = asyncio.get_running_loop()
    quiet_outages(loop)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    store = await open_store(
        cfg.store.resolved_url(Path.cwd()), query_timeout_s=cfg.http.query_timeout_s
    )
    nice_workers(loop, cfg.http.nice)
    try:
        ingest, totals = IngestMetrics(), HttpFigures()
        app = http_app(cfg, store, ingest)
        guard: Guard = app.state.guard
        guard.totals = totals.as_tuple
        reader, writer = await asyncio.open_unix_connection(sock=control)
        server = http_server(cfg, app, lambda: writer.write(frame(Started(os.getpid()))))

        async def stop_server() -> None:
            await stop.wait()
            server.should_exit = True

        async with asyncio.TaskGroup() as tg:
            follower = tg.create_task(_follow(reader, ingest, totals, stop))
            tg.create_task(_report(writer, guard, stop))
            tg.create_task(stop_server())
            await server.serve(sockets=[listener])
            stop.set()
            follower.cancel()
        writer.close()
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloud_collector.api_process")
    parser.add_argument("--control-fd", type=int, required=True, help="the control channel")
    parser.add_argument("--listen-fd", type=int, required=True, help="the bound HTTP socket")
    parser.add_argument("--parent", type=int, required=True, help="the collector's pid")
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    control = socket.socket(fileno=args.control_fd)
    listener = socket.socket(fileno=args.listen_fd)
    cfg = read_frame_blocking(control)
    if not isinstance(cfg, CollectorConfig):
        raise SystemExit("api process: no config on the control channel")
    configure_logging(cfg.log.level)
    Redactor(config_secrets(cfg)).install()
    try:
        import uvloop
    except ImportError:  # optional, as in the collector itself
        run: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    else:
        run = uvloop.run
    try:
        run(serve(cfg, listener, control))
    except CollectorError as exc:  # e.g. the store cannot be opened: one line, no traceback
        log.error("api process: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
