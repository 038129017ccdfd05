"""The whole product on one machine: ``python -m cloud_collector.demo`` (``scripts/demo.sh``).

Starts, under ``var/demo/`` (wiped at each start):

- a mosquitto of its own on a free 127.0.0.1 port (config and log in ``var/demo/mosquitto``);
- ``cloud-collector run`` on SQLite (``var/demo/collector.sqlite3``), HTTP on 127.0.0.1:8080
  (or the next free port), serving the operator dashboard at ``/``;
- a handful of simulated taxis: real ``edge-agent run`` processes whose CAN buses replay
  fixture drives (``hw_fixtures.generate``, along three GNSS tracks, with the start moved to
  the wall clock so times look live) at recorded pace, positions from the drive's NMEA
  track (``[gnss] nmea``). When a drive is over, the taxi gets a new one and its agent is
  restarted on the same outbox, so the demo keeps going;
- one taxi ("taxi-4" by default) talks to the broker through a small TCP proxy which the
  orchestrator cuts for a while (default: after 40 s, for 60 s), so its uplink goes down:
  the broker publishes its will (offline), its outbox backlog builds up, and drains after.

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

from edge_agent import config as agent_config
from tests.support.agent_config import replay_config_toml

REPO: Final = Path(__file__).resolve().parent.parent
MOSQUITTO: Final = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
BIN: Final = Path(sys.executable).parent
PR_SET_PDEATHSIG: Final = 1
STOP_TIMEOUT_S: Final = 15.0

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


# The generator with its start time moved: argv[1] is the start (Unix seconds).
_GENERATE: Final = (
    "import sys; import hw_fixtures.generate as g; g.START_EPOCH_S = int(sys.argv.pop(1)); "
    "raise SystemExit(g.main(sys.argv[1:]))"
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
    http_port: int = 8080
    taxis: int = 5
    outage_after_s: float = 40.0
    outage_for_s: float = 60.0
    duration_s: float | None = None  # None: until Ctrl-C
    health_interval_s: float = 5.0
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

    def say(self, text: str) -> None:
        if not self.opts.quiet:
            print(f"demo: {text}", flush=True)

    # -- setup ---------------------------------------------------------------------------

    async def drive(self, taxi: Taxi, lap: int) -> Path:
        """A fresh drive of ``taxi``'s track that starts now (the generator's start time
        moved to the wall clock), so event times, lag and "today" look live."""
        target = self.opts.var / "drives" / f"{taxi.id}-{lap}"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _GENERATE, str(int(time.time())), "--out", str(target),
            "--track", taxi.track, "--seed", str(taxi.seed), "--formats", "log",
            cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
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
        http_port = free_port(self.opts.http_port)
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
listen = "127.0.0.1:{http_port}"

[log]
level = "warning"
{self._alerts_section()}"""
        )
        child = Child(
            "collector",
            [sys.executable, "-m", "cloud_collector.cli", "run", "--config", str(conf)],
            self.opts.var,
            self.opts.var / "collector.log",
        )
        await child.start()
        self.children.append(child)
        url = f"http://127.0.0.1:{http_port}"
        if not await _wait_ready(url, 30, child):
            raise RuntimeError(f"collector not ready; see {child.log}")
        self.url = url + "/"
        return http_port

    def _alerts_section(self) -> str:
        """Small thresholds, so the demo's outage shows as alerts within minutes."""
        return "\n[alerts]\nbacklog_age_min = 1\noffline_after_min = 1\n"

    def agent_config(self, taxi: Taxi, drive: Path, port: int) -> Path:
        d = self.opts.var / "taxis" / taxi.id
        d.mkdir(parents=True, exist_ok=True)
        text = replay_config_toml(
            vehicle=taxi.id,
            fleet="demo",
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
        mqtt_port = await self.start_broker()
        await self.start_collector(mqtt_port)
        if any(t.via_proxy for t in taxis):
            self.proxy = UplinkProxy(mqtt_port)
            await self.proxy.restore()
        self.say(f"starting {len(taxis)} taxis (broker 127.0.0.1:{mqtt_port})")
        loops = [asyncio.create_task(self._taxi(t, mqtt_port)) for t in taxis]
        outage = asyncio.create_task(self._outage(taxis))
        ready = time.monotonic() + 60
        while len(self.pids()) < len(taxis) + 2 and time.monotonic() < ready:
            if self.stop.is_set() or any(t.done() for t in loops):
                break
            await asyncio.sleep(0.2)
        self.say(f"dashboard: {self.url}  (Ctrl-C stops everything)")
        state = {"url": self.url, "pid": os.getpid(), "children": self.pids()}
        (opts.var / "demo.json").write_text(json.dumps(state, indent=2))
        try:
            async with asyncio.timeout(opts.duration_s):
                await self.stop.wait()
        except TimeoutError:
            pass
        self.stop.set()
        outage.cancel()
        for task in loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task  # raises a taxi's setup error, if any
        return 0

    def pids(self) -> dict[str, int]:
        return {c.name: c.proc.pid for c in self.children if c.running and c.proc is not None}

    async def _taxi(self, taxi: Taxi, mqtt_port: int) -> None:
        """Drive after drive: a new recording, the agent replays it at recorded pace, and
        is restarted (same outbox) once the drive is over or if it died."""
        port = self.proxy.port if taxi.via_proxy and self.proxy is not None else mqtt_port
        child: Child | None = None
        lap = 0
        while not self.stop.is_set():
            drive = await self.drive(taxi, lap)
            if self.stop.is_set():
                break
            conf = self.agent_config(taxi, drive, port)
            if child is None:
                child = Child(
                    taxi.id,
                    [str(BIN / "edge-agent"), "run", "--config", str(conf)],
                    conf.parent,
                    conf.parent / "agent.log",
                )
                self.children.append(child)
            await child.start()
            assert child.proc is not None
            ends = asyncio.create_task(child.proc.wait())
            stops = asyncio.create_task(self.stop.wait())
            await asyncio.wait(
                {ends, stops}, timeout=_duration_s(drive) + 5, return_when=asyncio.FIRST_COMPLETED
            )
            stops.cancel()
            ends.cancel()
            if self.stop.is_set():
                break  # shutdown() stops it, in order
            await child.stop()
            shutil.rmtree(drive, ignore_errors=True)
            lap += 1

    async def _outage(self, taxis: list[Taxi]) -> None:
        if self.proxy is None:
            return
        names = ", ".join(t.id for t in taxis if t.via_proxy)
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


def _duration_s(drive: Path) -> float:
    try:
        expected = json.loads((drive / "drive.expected.json").read_text())
        return float(expected["duration_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return 106.0


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
        prog="python -m cloud_collector.demo",
        description="broker, collector with dashboard, and simulated taxis on this machine",
    )
    p.add_argument("--var", type=Path, default=Options.var, help="work directory (wiped)")
    p.add_argument("--http-port", type=int, default=8080, help="dashboard port (if free)")
    p.add_argument("--taxis", type=int, default=5, help="simulated taxis, 1-5 (default 5)")
    p.add_argument("--outage-after", type=float, default=40.0, help="seconds before the cut")
    p.add_argument("--outage-for", type=float, default=60.0, help="seconds the uplink is cut")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    opts = Options(
        var=args.var.resolve(),
        http_port=args.http_port,
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


if __name__ == "__main__":
    raise SystemExit(main())
