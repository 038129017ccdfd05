"""The whole product on one machine: ``python -m demo`` (``scripts/demo.sh``).

Starts, under ``var/demo/`` (wiped at each start):

- a mosquitto of its own on a free 127.0.0.1 port (config and log in ``var/demo/mosquitto``);
- ``cloud-collector run`` on SQLite (``var/demo/collector.sqlite3``), HTTP on ``--http``
  (default 127.0.0.1:8080; the next free port after it if taken), serving the operator
  dashboard at ``/``; its URL is printed as soon as it answers;
- a handful of simulated taxis: edge agents (``python -m demo.taxi``: the agent of
  ``edge-agent run`` with its replay buses looping) whose CAN buses replay a fixture drive
  (``hw_fixtures.generate``, along three GNSS tracks) at recorded pace, positions from the
  drive's NMEA track (``[gnss] nmea``). Each taxi's drive is generated once; its agent
  plays it lap after lap, every lap's times moved on by the lap's length (the first to the
  wall clock, so times look live), in one process with one connection and one outbox, so
  the taxi stays online between laps. Each taxi is announced once its first batch is
  acknowledged; an agent that dies is started again on the same outbox;
- one taxi ("taxi-4" by default) talks to the broker through a small TCP proxy which the
  orchestrator cuts for a while (default: 40 s after that taxi's first acknowledged batch,
  for 60 s), so its uplink goes down: the broker publishes its will (offline), its outbox
  backlog builds up, and drains after.

Ctrl-C (SIGINT) or SIGTERM stops everything: taxis first (they flush and say offline), then
the collector, then the broker. Every child also gets SIGTERM if this process dies
(``PR_SET_PDEATHSIG``), so nothing is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cloud_collector.config import load_config as load_collector_config
from cloud_collector.store import open_store
from cloud_collector.tokens_cli import create_token, new_record
from demo.online import wait_first_ack
from edge_agent import config as agent_config
from harness.agent import replay_config_toml

REPO: Final = Path(__file__).resolve().parent.parent
MOSQUITTO: Final = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
BIN: Final = Path(sys.executable).parent
PR_SET_PDEATHSIG: Final = 1
STOP_TIMEOUT_S: Final = 15.0
# Every taxi's fleet; the dashboard's operator token covers them all.
DEMO_FLEETS: Final = ("demo",)
# Seconds before an agent that died is started again.
RESTART_AFTER_S: Final = 2.0

# Short timeouts, so the taxi whose uplink is cut notices and recovers within seconds.
DEMO_MQTT_TUNING: Final = """
keepalive_s = 10
connect_timeout_s = 5
publish_timeout_s = 5
reconnect_min_s = 0.5
reconnect_max_s = 3
resend_after_ms = 10000
"""


@dataclass(frozen=True)
class Taxi:
    id: str
    track: str
    seed: int
    via_proxy: bool = False

    @property
    def drive_dir_name(self) -> str:
        return f"{self.track}-{self.seed}"


TAXIS: Final = (
    Taxi("taxi-1", "seoul", 1),
    Taxi("taxi-2", "gangnam", 2),
    Taxi("taxi-3", "euljiro", 3),
    Taxi("taxi-4", "gangnam", 4, via_proxy=True),
    Taxi("taxi-5", "euljiro", 5),
)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the orchestrator goes away (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(preferred: int | None = None) -> int:
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port: int = s.getsockname()[1]
            return port
    raise OSError("no free port on 127.0.0.1")


def next_free_port(host: str, first: int, tries: int = 100) -> int:
    """``first`` if it can be bound on ``host``, else the next port after it that can."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in range(first, min(first + tries, 65536)):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            # As a listening server binds: a port left in TIME_WAIT is free to it.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port on {host} from {first} to {first + tries - 1}")


def parse_http(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::]:8080`` for IPv6) or a bare ``PORT`` on 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not host or not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    return host, number


def local_url(host: str, port: int) -> str:
    """The URL a browser on this machine opens: a wildcard listener is reached on loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


async def wait_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


# ---------------------------------------------------------------- uplink proxy


class UplinkProxy:
    """A TCP relay 127.0.0.1:``port`` -> 127.0.0.1:``target``, which can be cut: ``cut()``
    drops every connection and stops listening (the taxi sees its link die), ``restore()``
    listens again on the same port."""

    def __init__(self, target: int, port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def up(self) -> bool:
        return self._server is not None

    async def restore(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True
            )

    async def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._writers.update((client_w, broker_w))

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.transport.abort()

        try:
            await asyncio.gather(pump(client_r, broker_w), pump(broker_r, client_w))
        finally:
            self._writers.difference_update((client_w, broker_w))


# ---------------------------------------------------------------- the demo


@dataclass
class Options:
    var: Path = REPO / "var" / "demo"
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    taxis: int = 5
    outage_after_s: float = 40.0
    outage_for_s: float = 60.0
    duration_s: float | None = None  # None: until Ctrl-C
    health_interval_s: float = 5.0
    lap_minutes: float | None = None  # None: the generator's one 106 s cycle
    quiet: bool = False


@dataclass
class Child:
    name: str
    argv: list[str]
    cwd: Path
    log: Path
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=self.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # Ctrl-C reaches the orchestrator only; it stops us
                preexec_fn=_die_with_parent,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


@dataclass
class Demo:
    opts: Options
    children: list[Child] = field(default_factory=list)
    proxy: UplinkProxy | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    token: str = ""  # the dashboard's operator token (every demo fleet)
    online: dict[str, asyncio.Event] = field(default_factory=dict)

    def say(self, text: str) -> None:
        if not self.opts.quiet:
            print(f"demo: {text}", flush=True)

    # -- setup ---------------------------------------------------------------------------

    async def drive(self, taxi: Taxi, start_s: int) -> Path:
        """A drive of ``taxi``'s track whose first frame is at ``start_s`` (Unix seconds;
        the looping agent moves it to the wall clock again when it starts)."""
        target = self.opts.var / "drives" / taxi.id
        laps = self.opts.lap_minutes
        minutes = [] if laps is None else ["--minutes", f"{laps:g}"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hw_fixtures.generate", "--start", str(start_s),
            "--out", str(target), *minutes,
            "--track", taxi.track, "--seed", str(taxi.seed), "--formats", "log",
            cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        try:
            _, err = await proc.communicate()
        except asyncio.CancelledError:
            # A drive still being generated is not wanted once the demo stops.
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"drive of {taxi.id}: generator failed: {err.decode()[-500:]}")
        return target

    async def start_broker(self) -> int:
        d = self.opts.var / "mosquitto"
        d.mkdir(parents=True, exist_ok=True)
        port = free_port()
        lines = [
            "user root" if os.geteuid() == 0 else "",
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            "max_inflight_messages 0",
            "max_queued_messages 100000",
            f"log_dest file {d / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        conf = d / "mosquitto.conf"
        conf.write_text("\n".join(x for x in lines if x) + "\n")
        child = Child("mosquitto", [MOSQUITTO, "-c", str(conf)], d, d / "stdout.log")
        await child.start()
        self.children.append(child)
        if not await wait_port(port, 10):
            raise RuntimeError(f"mosquitto did not start; see {d / 'mosquitto.log'}")
        return port

    async def start_collector(self, mqtt_port: int) -> int:
        host = self.opts.http_host
        http_port = next_free_port(host, self.opts.http_port)
        listen = f"[{host}]:{http_port}" if ":" in host else f"{host}:{http_port}"
        db = self.opts.var / "collector.sqlite3"
        conf = self.opts.var / "collector.toml"
        conf.write_text(
            f"""# written by the demo orchestrator
[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
client_id = "demo-collector"
keepalive_s = 10
reconnect_max_s = 2.0

[store]
url = "sqlite:///{db}"

[http]
listen = "{listen}"

[log]
level = "warning"
{self._alerts_section()}"""
        )
        self.token = await mint_operator_token(conf, DEMO_FLEETS)
        child = Child(
            "collector",
            [sys.executable, "-m", "cloud_collector.cli", "run", "--config", str(conf)],
            self.opts.var,
            self.opts.var / "collector.log",
        )
        await child.start()
        self.children.append(child)
        self.url = local_url(host, http_port)
        # Two processes start (ingest and its API process): 60 s for a loaded machine.
        if not await _wait_ready(self.url.rstrip("/"), 60, child):
            raise RuntimeError(f"collector not ready; see {child.log}")
        return http_port

    def _alerts_section(self) -> str:
        """Small thresholds, so the demo's outage shows as alerts within minutes."""
        return "\n[alerts]\nbacklog_age_min = 1\noffline_after_min = 1\n"

    def agent_config(self, taxi: Taxi, drive: Path, port: int) -> Path:
        d = self.opts.var / "taxis" / taxi.id
        d.mkdir(parents=True, exist_ok=True)
        text = replay_config_toml(
            vehicle=taxi.id,
            fleet=DEMO_FLEETS[0],
            recording=drive / "drive.log",
            outbox=d / "outbox.sqlite3",
            mqtt_port=port,
            mqtt_extra=DEMO_MQTT_TUNING,
            nmea=drive / "drive.nmea",
            extra=f"\n[health]\ninterval_s = {self.opts.health_interval_s}\n",
        )
        conf = d / "agent.toml"
        conf.write_text(text)
        agent_config.load_config(conf)  # fail here, readably, not in a child's log
        return conf

    # -- run -----------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        try:
            return await self._run()
        finally:
            self.stop.set()
            await self.shutdown()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def _run(self) -> int:
        opts = self.opts
        shutil.rmtree(opts.var, ignore_errors=True)
        opts.var.mkdir(parents=True)
        (opts.var / "drives").mkdir()
        self.say(f"work directory {opts.var}")
        taxis = list(TAXIS[: max(1, min(opts.taxis, len(TAXIS)))])
        self.say("starting the broker and the collector")
        mqtt_port = await self.start_broker()
        http_port = await self.start_collector(mqtt_port)
        self.say(f"dashboard: {self.url}#token={self.token}  (Ctrl-C stops everything)")
        if opts.http_host in ("0.0.0.0", "::"):
            self.say(
                f"  from another machine: http://<this machine's address>:{http_port}/"
                f"#token={self.token}"
            )
        if any(t.via_proxy for t in taxis):
            self.proxy = UplinkProxy(mqtt_port)
            await self.proxy.restore()
        self.online = {t.id: asyncio.Event() for t in taxis}
        self.say(
            f"starting {len(taxis)} taxis (broker 127.0.0.1:{mqtt_port}); each is listed once "
            "its first batch is acknowledged"
        )
        loops = [asyncio.create_task(self._taxi(t, mqtt_port)) for t in taxis]
        watchers = [asyncio.create_task(self._announce(t)) for t in taxis]
        outage = asyncio.create_task(self._outage(taxis))
        ready = time.monotonic() + 60
        while len(self.pids()) < len(taxis) + 2 and time.monotonic() < ready:
            if self.stop.is_set() or any(t.done() for t in loops):
                break
            await asyncio.sleep(0.2)
        state = {"url": self.url, "token": self.token, "pid": os.getpid(), "children": self.pids()}
        (opts.var / "demo.json").write_text(json.dumps(state, indent=2))
        try:
            async with asyncio.timeout(opts.duration_s):
                await self.stop.wait()
        except TimeoutError:
            pass
        self.stop.set()
        outage.cancel()
        for watcher in watchers:
            watcher.cancel()
        for task in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task  # raises a taxi's setup error, if any
        return 0

    def pids(self) -> dict[str, int]:
        return {c.name: c.proc.pid for c in self.children if c.running and c.proc is not None}

    def outbox(self, taxi: Taxi) -> Path:
        return self.opts.var / "taxis" / taxi.id / "outbox.sqlite3"

    async def _announce(self, taxi: Taxi) -> None:
        if await wait_first_ack(self.outbox(taxi), self.stop):
            self.online[taxi.id].set()
            up = sum(e.is_set() for e in self.online.values())
            self.say(f"{taxi.id} online: first batch acknowledged ({up}/{len(self.online)} taxis)")

    async def _taxi(self, taxi: Taxi, mqtt_port: int) -> None:
        """One drive, generated once; the agent plays it lap after lap and is started again
        (same outbox) only if it dies."""
        port = self.proxy.port if taxi.via_proxy and self.proxy is not None else mqtt_port
        drive = await self.drive(taxi, int(time.time()))
        if self.stop.is_set():
            return
        conf = self.agent_config(taxi, drive, port)
        child = Child(
            taxi.id,
            [sys.executable, "-m", "demo.taxi", "--config", str(conf)],
            REPO,
            conf.parent / "agent.log",
        )
        self.children.append(child)
        while not self.stop.is_set():
            await child.start()
            assert child.proc is not None
            ends = asyncio.create_task(child.proc.wait())
            stops = asyncio.create_task(self.stop.wait())
            await asyncio.wait({ends, stops}, return_when=asyncio.FIRST_COMPLETED)
            stops.cancel()
            ends.cancel()
            if self.stop.is_set():
                break  # shutdown() stops it, in order
            self.say(
                f"{taxi.id}: agent exited ({child.proc.returncode}); starting it again on "
                f"the same outbox (log: {child.log})"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), RESTART_AFTER_S)

    async def _outage(self, taxis: list[Taxi]) -> None:
        if self.proxy is None:
            return
        cut = [t for t in taxis if t.via_proxy]
        names = ", ".join(t.id for t in cut)
        # Timed from the taxi's first acknowledged batch: on a slow machine start-up alone
        # can take longer than the delay, and a taxi never seen online cannot go offline.
        await asyncio.gather(*(self.online[t.id].wait() for t in cut))
        await asyncio.sleep(self.opts.outage_after_s)
        await self.proxy.cut()
        self.say(f"uplink of {names} cut for {self.opts.outage_for_s:g} s")
        await asyncio.sleep(self.opts.outage_for_s)
        await self.proxy.restore()
        self.say(f"uplink of {names} back; its backlog drains")

    async def shutdown(self) -> None:
        """Taxis first (they flush and publish offline), then the collector, then the
        broker; each gets SIGTERM, then SIGKILL after a bounded wait."""
        agents = [c for c in self.children if c.name.startswith("taxi")]
        others = [c for c in self.children if c not in agents]
        if self.proxy is not None:
            await self.proxy.restore()  # let a cut taxi say goodbye properly
        await asyncio.gather(*(c.stop() for c in agents))
        if self.proxy is not None:
            await self.proxy.cut()
        for child in reversed(others):
            await child.stop()
        self.say("stopped")


async def mint_operator_token(conf: Path, fleets: tuple[str, ...]) -> str:
    """An operator token for ``fleets`` in the store of ``conf`` (as ``cloud-collector
    token create`` makes it; in process, which starts faster than the command)."""
    cfg = load_collector_config(conf)
    store = await open_store(cfg.store.resolved_url(conf.parent))
    try:
        record = new_record("demo", "operator", list(fleets), None, int(time.time() * 1000))
        return await create_token(store.access, record)
    finally:
        await store.close()


async def _wait_ready(url: str, timeout_s: float, child: Child) -> bool:
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline and child.running:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url + "/readyz")).status_code == 200:
                    return True
            await asyncio.sleep(0.2)
    return False


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m demo",
        description="broker, collector with dashboard, and simulated taxis on this machine",
    )
    p.add_argument("--var", type=Path, default=Options.var, help="work directory (wiped)")
    p.add_argument(
        "--http",
        type=parse_http,
        default=("127.0.0.1", 8080),
        metavar="HOST:PORT",
        help="dashboard address (default 127.0.0.1:8080; the next free port after it if "
        "taken); 0.0.0.0:8080 to reach it from other machines",
    )
    p.add_argument("--http-port", type=int, help="same as --http 127.0.0.1:PORT")
    p.add_argument(
        "--lap-minutes",
        type=float,
        help="length of the generated drive each taxi plays in a loop (default 106 s)",
    )
    p.add_argument("--taxis", type=int, default=5, help="simulated taxis, 1-5 (default 5)")
    p.add_argument(
        "--outage-after",
        type=float,
        default=40.0,
        help="seconds from the cut taxi's first acknowledged batch to the cut",
    )
    p.add_argument("--outage-for", type=float, default=60.0, help="seconds the uplink is cut")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    host, port = args.http if args.http_port is None else ("127.0.0.1", args.http_port)
    opts = Options(
        var=args.var.resolve(),
        http_host=host,
        http_port=port,
        lap_minutes=args.lap_minutes,
        taxis=args.taxis,
        outage_after_s=args.outage_after,
        outage_for_s=args.outage_for,
        duration_s=args.duration,
    )
    try:
        return asyncio.run(Demo(opts).run())
    except (RuntimeError, OSError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
