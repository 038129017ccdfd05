"""The collector process: ingest and the HTTP API in one asyncio TaskGroup.

One owner for every task. SIGTERM and SIGINT set one ``stop`` event; then ingest finishes
the message in hand (commit, PUBACK, end-to-end ack) and disconnects cleanly, uvicorn
stops accepting and drains its requests, and the store is closed last. Anything the broker
delivered but we did not acknowledge is redelivered to our persistent session later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Generator
from pathlib import Path

import uvicorn

from cloud_collector.api import create_app
from cloud_collector.config import CollectorConfig
from cloud_collector.ingest import Ingestor
from cloud_collector.metrics import IngestMetrics
from cloud_collector.store import open_store

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the service owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _prepare_sqlite_dir(url: str) -> None:
    # The embedded default keeps the database under ./var; create it on first start.
    prefix = "sqlite://"
    if url.startswith(prefix):
        Path(url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


async def run(cfg: CollectorConfig, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when running in the main thread)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    url = cfg.store.resolved_url(Path.cwd())
    _prepare_sqlite_dir(url)
    store = await open_store(url)
    try:
        metrics = IngestMetrics()
        app = create_app(
            store,
            metrics,
            mqtt_ready=lambda: metrics.connected,
            max_limit=cfg.http.max_limit,
            thresholds=cfg.alerts,
        )
        server = _Server(
            uvicorn.Config(
                app,
                host=cfg.http.host,
                port=cfg.http.port,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=5,
            )
        )
        ingestor = Ingestor(cfg.mqtt, store, metrics, intake=cfg.intake, quarantine=cfg.quarantine)

        async def stop_http() -> None:
            await stop.wait()
            server.should_exit = True

        async def http() -> None:
            await server.serve()
            # uvicorn returns early when it cannot bind: that must stop the whole service.
            if not stop.is_set():
                log.error("http server stopped unexpectedly")
                stop.set()

        log.info("collector starting")
        async with asyncio.TaskGroup() as tg:
            tg.create_task(ingestor.run(stop), name="ingest")
            tg.create_task(http(), name="http")
            tg.create_task(stop_http(), name="stop-http")
        log.info("collector stopped")
    finally:
        await store.close()
        for sig in handled:
            loop.remove_signal_handler(sig)
