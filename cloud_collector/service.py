"""The collector process: ingest and the HTTP API in one asyncio TaskGroup.

One owner for every task. SIGTERM and SIGINT set one ``stop`` event; then ingest finishes
the message in hand (commit, PUBACK, end-to-end ack) and disconnects cleanly, uvicorn
stops accepting and drains its requests, and the store is closed last. Anything the broker
delivered but we did not acknowledge is redelivered to our persistent session later.

The HTTP socket is bound before anything else: a collector that cannot serve its API
refuses to start (``ListenError``) instead of ingesting unseen. With ``[http] processes``
above 0 (the default) the API on it is served by API processes this one starts, restarts
and stops (``api_processes``), at a lower priority, and this process keeps ingest and
the ``metrics_listen`` listener; with 0, by a server in this process.

Under systemd (``Type=notify``), ``READY=1`` goes out once the store is open and the API
listens, and ``WATCHDOG=1`` only while the store makes progress
(``store.progress.WatchProgress``): a store whose transactions hang or keep failing
stops the pings, and systemd restarts the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Final

import asyncpg
import uvicorn
from fastapi import FastAPI

from cloud_collector.api import create_app, metrics_app
from cloud_collector.api_processes import ApiProcesses
from cloud_collector.config import CollectorConfig, HttpConfig
from cloud_collector.errors import CollectorError, ConfigError, ListenError, ServiceError
from cloud_collector.ingest import Ingestor
from cloud_collector.metrics import IngestMetrics
from cloud_collector.mqtt import MqttDelivery
from cloud_collector.retention_job import RetentionJob
from cloud_collector.store import Store, open_store
from cloud_collector.store.maintenance import maintenance_for
from cloud_collector.store.progress import Transacting, WatchProgress
from daemon_kit.sdnotify import Notifier, WatchdogGate

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S: Final = 0.001

# How often the watchdog looks at the store's progress (at most; more often for a short
# WatchdogSec=).
WATCH_TICK_S: Final = 1.0


# While the database is down, the same failure repeats every few seconds: one line per
# condition this often, with how many were held back since.
OUTAGE_LOG_S: Final = 60.0
# Failures of the database connection itself, which end when the server is back.
_OUTAGE_ERRORS: Final = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
)


class OutageLog(logging.Filter):
    """One line per condition per ``OUTAGE_LOG_S``: for a database outage, instead of a
    traceback per retry of a library's background task (asyncpg's pool, a connection
    closed in a task nobody awaits), the first at once, then a count."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._monotonic = monotonic
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def admit(self, key: str) -> int | None:
        """None to stay quiet; else how many lines of ``key`` were held back since."""
        now = self._monotonic()
        last = self._last.get(key)
        if last is not None and now - last < OUTAGE_LOG_S:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)

    def filter(self, record: logging.LogRecord) -> bool:
        """For a logger whose warnings carry a traceback per retry: one line, rate-limited."""
        exc = record.exc_info[1] if record.exc_info else None
        key = f"{record.name}:{record.msg}:{type(exc).__name__}"
        held = self.admit(key)
        if held is None:
            return False
        if exc is not None:
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = None
        if held:
            record.msg = f"{record.getMessage()} ({held} more like it in the last minute)"
            record.args = None
        return True

    def loop_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        """asyncio's handler of unretrieved task exceptions: a lost database connection is
        a warning (the store reports the outage itself), anything else as asyncio would."""
        exc = context.get("exception")
        if not isinstance(exc, _OUTAGE_ERRORS):
            loop.default_exception_handler(context)
            return
        key = f"{context.get('message')}:{type(exc).__name__}"
        held = self.admit(key)
        if held is None:
            return
        more = f" ({held} more like it in the last minute)" if held else ""
        log.warning(
            "database connection lost in a background task: %s: %s%s",
            type(exc).__name__,
            exc,
            more,
        )


def quiet_outages(loop: asyncio.AbstractEventLoop, outages: OutageLog | None = None) -> OutageLog:
    """Install :class:`OutageLog` on the loop and on asyncpg's pool logger."""
    outages = outages or OutageLog()
    loop.set_exception_handler(outages.loop_handler)
    pool_log = logging.getLogger("asyncpg.pool")
    pool_log.filters[:] = [f for f in pool_log.filters if not isinstance(f, OutageLog)]
    pool_log.addFilter(outages)
    return outages


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the service owns the signals.
    ``on_started`` runs once the server accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], object]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _prepare_sqlite_dir(url: str) -> None:
    # The embedded default keeps the database under ./var; create it on first start.
    prefix = "sqlite://"
    if url.startswith(prefix):
        Path(url[len(prefix) :]).parent.mkdir(parents=True, exist_ok=True)


def bind_http(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound now; ``ListenError`` names the address."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ListenError(f"http: cannot listen on {shown}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ListenError(f"http: cannot listen on {shown}: {reason}") from exc
    return sock


async def _watchdog(notifier: Notifier, store: Store, stop: asyncio.Event) -> None:
    """Ping systemd's watchdog while the store makes progress (see the module doc)."""
    interval = notifier.watchdog_interval_s
    if interval is None or not isinstance(store, Transacting):
        return
    # 2/3 of WatchdogSec, as the edge agent: a stall is caught within one period.
    gate = WatchdogGate(stall_after_s=interval * 4 / 3, ping_every_s=interval)
    progress = WatchProgress()
    while not stop.is_set():
        if gate.observe(time.monotonic(), progress.progress(store.tx_stats)):
            notifier.watchdog()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), min(WATCH_TICK_S, interval / 4))


def check_tls(http: HttpConfig) -> ssl.SSLContext | None:
    """The HTTPS context of ``[http] tls_cert``/``tls_key`` (None without them), loaded
    now, so that a missing, unreadable or mismatched file is a ``ConfigError`` naming the
    key before anything starts."""
    if http.tls_cert is None or http.tls_key is None:
        return None
    for key, name in (("tls_cert", http.tls_cert), ("tls_key", http.tls_key)):
        try:
            Path(name).read_bytes()
        except OSError as exc:
            raise ConfigError(f"[http] {key}: {name}: cannot read: {exc.strerror}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(http.tls_cert, http.tls_key)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"[http] tls_cert/tls_key: {http.tls_cert}, {http.tls_key}: not a PEM certificate"
            f" and its private key ({exc.reason or exc})"
        ) from None
    return context


def http_server(
    cfg: CollectorConfig, app: FastAPI, on_started: Callable[[], object] = lambda: None
) -> _Server:
    tls = cfg.http.tls_cert is not None
    return _Server(
        uvicorn.Config(
            app,
            host=cfg.http.host,
            port=cfg.http.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            ssl_certfile=cfg.http.tls_cert if tls else None,
            ssl_keyfile=cfg.http.tls_key if tls else None,
        ),
        on_started=on_started,
    )


def _metrics_server(cfg: CollectorConfig, app: FastAPI) -> _Server:
    """The ``[http] metrics_listen`` listener: /metrics alone, plain HTTP (loopback)."""
    return _Server(
        uvicorn.Config(
            metrics_app(app), log_config=None, access_log=False, lifespan="off",
            timeout_graceful_shutdown=2,
        ),
        on_started=lambda: None,
    )  # fmt: skip


def http_app(cfg: CollectorConfig, store: Store, metrics: IngestMetrics) -> FastAPI:
    """The HTTP API of ``store`` as ``cfg`` configures it."""
    return create_app(
        store,
        metrics,
        mqtt_ready=lambda: metrics.connected,
        max_limit=cfg.http.max_limit,
        thresholds=cfg.alerts,
        dashboard=cfg.dashboard,
        http=cfg.http,
        auth=cfg.auth,
        audit_path=cfg.audit.resolved_path(cfg.store.resolved_url(Path.cwd()), Path.cwd()),
    )


def _api_servers(
    cfg: CollectorConfig,
    app: FastAPI,
    listener: socket.socket,
    metrics: IngestMetrics,
    notifier: Notifier,
) -> tuple[list[tuple[_Server, socket.socket, str]], ApiProcesses | None]:
    """The API on ``listener``: a server in this process (``[http] processes = 0``), or
    the API processes (then ``app`` serves only the metrics listener, with their figures)."""

    def ready() -> None:
        notifier.ready(f"store open; http on {cfg.http.listen}")

    if cfg.http.processes == 0:
        return [(http_server(cfg, app, ready), listener, cfg.http.listen)], None
    api = ApiProcesses(cfg, listener, metrics, on_started=ready)
    app.state.guard.totals = api.figures
    return [], api


async def _serve(
    cfg: CollectorConfig,
    store: Store,
    listeners: list[socket.socket],
    notifier: Notifier,
    stop: asyncio.Event,
) -> None:
    """Ingest, the HTTP API (and the metrics listener) and the watchdog, one task group,
    until ``stop``."""
    metrics = IngestMetrics()
    app = http_app(cfg, store, metrics)
    servers, api = _api_servers(cfg, app, listeners[0], metrics, notifier)
    if len(listeners) > 1 and cfg.http.metrics_listen is not None:
        servers.append((_metrics_server(cfg, app), listeners[1], cfg.http.metrics_listen))
    ingestor = Ingestor(
        cfg.mqtt,
        store,
        metrics,
        delivery=MqttDelivery(cfg.mqtt),
        intake=cfg.intake,
        quarantine=cfg.quarantine,
    )

    async def stop_http() -> None:
        await stop.wait()
        for srv, _, _ in servers:
            srv.should_exit = True

    async def http(srv: _Server, sock: socket.socket, where: str) -> None:
        await srv.serve(sockets=[sock])
        if not stop.is_set():
            stop.set()
            raise ServiceError(f"http server on {where} stopped unexpectedly")

    log.info("collector starting")
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(ingestor.run(stop), name="ingest")
            if api is not None:
                tg.create_task(api.run(stop), name="api processes")
            for srv, sock, where in servers:
                tg.create_task(http(srv, sock, where), name=f"http {where}")
            tg.create_task(stop_http(), name="stop-http")
            tg.create_task(_watchdog(notifier, store, stop), name="watchdog")
            retention = RetentionJob(cfg.retention, maintenance_for(store), metrics)
            tg.create_task(retention.run(stop), name="retention")
    except* CollectorError as group:
        # One line for the command line, not a task group's traceback.
        raise group.exceptions[0] from None
    log.info("collector stopped")


async def run(cfg: CollectorConfig, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGTERM/SIGINT when running in the main thread).

    Raises ``ListenError`` when the API's address is taken, ``StoreError`` when the store
    cannot be opened, ``ServiceError`` when the API server stops on its own."""
    stop = stop or asyncio.Event()
    # The loop hands its interpreter lock to worker threads (the store's, the API's large
    # answers) and needs it back after each of ingest's many short awaits: 1 ms instead of
    # 5 ms between switches keeps an ingest transaction from waiting 5 ms per statement.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    loop = asyncio.get_running_loop()
    previous_handler = loop.get_exception_handler()
    quiet_outages(loop)
    handled: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    check_tls(cfg.http)
    listeners = [bind_http(cfg.http.host, cfg.http.port)]
    try:
        if cfg.http.metrics_listen is not None:
            host, _, port = cfg.http.metrics_listen.rpartition(":")
            listeners.append(bind_http(host.strip("[]"), int(port)))
        url = cfg.store.resolved_url(Path.cwd())
        _prepare_sqlite_dir(url)
        grace_s = cfg.store.ack_gap_grace_s
        store = await open_store(
            url,
            gap_grace_ms=None if grace_s is None else grace_s * 1000,
            query_timeout_s=cfg.http.query_timeout_s,
            contributions_ms=cfg.retention.contributions_ms(),
            k_anonymity=cfg.auth.k_anonymity,
        )
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    notifier = Notifier.from_env()
    try:
        await _serve(cfg, store, listeners, notifier, stop)
    finally:
        notifier.stopping("closing the store")
        notifier.close()
        for sock in listeners:
            sock.close()
        await store.close()
        for sig in handled:
            loop.remove_signal_handler(sig)
        loop.set_exception_handler(previous_handler)
