"""The operator dashboard in a real headless Chromium, over a real fleet: mosquitto, the
collector on SQLite, and ``edge-agent run`` processes replaying the fixture drive; and the
demo orchestrator (``scripts/demo.sh``) run for a bounded time.

The browser is Debian's ``chromium`` driven by ``playwright-core`` (from
``frontend/package-lock.json``, installed here with ``npm ci`` when missing) through
``tests/browser/dashboard.mjs``. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from demo.run import UplinkProxy
from harness.agent import EDGE_AGENT, replay_config_toml
from harness.collector import REPO, CollectorProcess, write_config
from harness.mosquitto import MosquittoHarness, free_port

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None
)
NODE = shutil.which("node")
NPM = shutil.which("npm")
FRONTEND = REPO / "frontend"
NODE_MODULES = FRONTEND / "node_modules"
SCRIPT = REPO / "tests" / "browser" / "dashboard.mjs"
ARTIFACTS = REPO / "test-artifacts"
DRIVES = REPO / "hw_fixtures" / "drives"

needs_browser = pytest.mark.skipif(
    CHROMIUM is None or NODE is None,
    reason="needs Debian's chromium and node (scripts/setup.sh installs both)",
)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """playwright-core from the committed lock file; ``npm ci`` once if it is missing."""
    if not (NODE_MODULES / "playwright-core" / "package.json").is_file():
        assert NPM is not None, "npm is missing (scripts/setup.sh installs it)"
        done = subprocess.run(
            [NPM, "ci", "--no-audit", "--no-fund"],
            cwd=FRONTEND, capture_output=True, timeout=600, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()[-3000:]
    return NODE_MODULES


class ProxyThread:
    """The demo's uplink proxy on its own event loop thread, for a synchronous test."""

    def __init__(self, target: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.proxy = UplinkProxy(target)
        self.call(self.proxy.restore())

    def call(self, coro: object) -> None:
        assert asyncio.iscoroutine(coro)
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def close(self) -> None:
        self.call(self.proxy.cut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _agent_config(d: Path, vehicle: str, port: int) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    conf = d / "agent.toml"
    conf.write_text(
        replay_config_toml(
            vehicle=vehicle,
            fleet="demo",
            recording=DRIVES / "drive.log",
            outbox=d / "outbox.sqlite3",
            mqtt_port=port,
            mqtt_extra="keepalive_s = 10\nconnect_timeout_s = 5\npublish_timeout_s = 5\n"
            "reconnect_min_s = 0.5\nreconnect_max_s = 2",
            nmea=DRIVES / "drive.nmea",
        )
    )
    return conf


@contextlib.contextmanager
def _agents(tmp: Path, ports: dict[str, int]) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for vehicle, port in ports.items():
            conf = _agent_config(tmp / vehicle, vehicle, port)
            with (tmp / vehicle / "agent.log").open("ab") as out:
                procs[vehicle] = subprocess.Popen(
                    [str(EDGE_AGENT), "run", "--config", str(conf)],
                    cwd=conf.parent, stdout=out, stderr=out,
                )  # fmt: skip
        yield procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _vehicles(collector: CollectorProcess) -> dict[str, dict[str, object]]:
    body = collector.get("/v1/vehicles").json()
    return {v["vehicle"]: v for v in body["vehicles"]}


def _wait(what: str, check: object, timeout_s: float) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    for _ in range(10_000):
        if check():
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:g} s: {what}")


# The smallest thresholds the collector accepts (one minute), so alerts show within the test.
ALERTS_CONFIG = "\n[alerts]\noffline_after_min = 1\nbacklog_age_min = 1\n"


@needs_browser
def test_dashboard_in_chromium(tmp_path: Path, node_modules: Path) -> None:
    assert CHROMIUM is not None
    assert NODE is not None
    ARTIFACTS.mkdir(exist_ok=True)
    with MosquittoHarness(tmp_path) as broker:
        http_port = free_port()
        cfg = write_config(
            tmp_path / "collector.toml",
            mqtt_port=broker.port,
            http_port=http_port,
            store_url=f"sqlite:///{tmp_path / 'collector.sqlite3'}",
        )
        with cfg.open("a") as f:
            f.write(ALERTS_CONFIG)
        collector = CollectorProcess(cfg, http_port, tmp_path / "collector.log")
        collector.start()
        proxy = ProxyThread(broker.port)
        try:
            ports = {"taxi-a": broker.port, "taxi-b": broker.port, "taxi-c": proxy.proxy.port}
            with _agents(tmp_path, ports) as agents:
                _wait(
                    "every taxi delivered a batch",
                    lambda: all(
                        int(str(_vehicles(collector).get(v, {}).get("batches_total", 0))) > 0
                        for v in ports
                    ),
                    90,
                )
                # taxi-b's agent stops (it says offline); taxi-c loses its uplink.
                agents["taxi-b"].send_signal(signal.SIGTERM)
                assert agents["taxi-b"].wait(20) == 0
                proxy.call(proxy.proxy.cut())
                spec = {
                    "url": f"http://127.0.0.1:{http_port}/",
                    "token": collector.token(),
                    "chromium": CHROMIUM,
                    "userDataDir": str(tmp_path / "chromium-profile"),
                    "screenshotDir": str(ARTIFACTS),
                    "nodeModules": str(node_modules),
                    "vehicles": list(ports),
                    "offline": "taxi-b",
                    # offline_after_min = 1: the stopped taxi's alert is due a minute later
                    "alertVehicle": "taxi-b",
                    "alertTimeoutMs": 120_000,
                    "timeoutMs": 45_000,
                    # MapLibre on software WebGL, on a loaded machine: its first render
                    "mapTimeoutMs": 90_000,
                }
                done = subprocess.run(
                    [NODE, str(SCRIPT)], input=json.dumps(spec).encode(),
                    capture_output=True, timeout=400, cwd=tmp_path, check=False,
                )  # fmt: skip
                out = done.stdout.decode()
                report = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
                failed = {k: v for k, v in report.get("checks", {}).items() if not v.get("ok")}
                assert done.returncode == 0, (failed, report.get("error"), done.stderr[-2000:])
                for shot in report["screenshots"]:
                    assert Path(shot).stat().st_size > 10_000
                # taxi-c: cut off, the broker published its will; back, its backlog drains.
                assert _vehicles(collector)["taxi-c"]["state"] == "offline"
                before = int(str(_vehicles(collector)["taxi-c"]["batches_total"]))
                proxy.call(proxy.proxy.restore())
                _wait(
                    "taxi-c online again and its backlog delivered",
                    lambda: (
                        (v := _vehicles(collector)["taxi-c"])["state"] == "online"
                        and int(str(v["batches_total"])) > before
                    ),
                    60,
                )
        finally:
            proxy.close()
            collector.kill()


# ---------------------------------------------------------------- the demo orchestrator


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def test_demo_orchestrator_runs_and_stops_cleanly(tmp_path: Path) -> None:
    var = tmp_path / "demo"
    log = tmp_path / "demo.log"
    with log.open("ab") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "demo", "--var", str(var),
             "--http-port", str(free_port()), "--taxis", "3",
             "--outage-after", "15", "--outage-for", "20", "--duration", "300"],
            cwd=REPO, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        state_file = var / "demo.json"
        _wait("the demo wrote its state", state_file.is_file, 60)
        state = json.loads(state_file.read_text())
        url = state["url"]
        assert url.startswith("http://127.0.0.1:")
        assert {"mosquitto", "collector", "taxi-1", "taxi-2", "taxi-3"} <= set(state["children"])

        auth = {"Authorization": f"Bearer {state['token']}"}

        def vehicles_and_events() -> bool:
            vehicles = httpx.get(url + "v1/vehicles", headers=auth, timeout=5).json()["vehicles"]
            events = httpx.get(
                url + "v1/events", params={"limit": "100"}, headers=auth, timeout=5
            ).json()
            located = [f for f in events["features"] if f["geometry"] is not None]
            return len(vehicles) >= 3 and len(located) > 0

        _wait("vehicles and located events in the API", vehicles_and_events, 60)
        page = httpx.get(url, timeout=5)
        assert page.status_code == 200
        assert "static/main.js" in page.text
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
        try:
            code = demo.wait(60)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait(10)
            raise
    assert code == 0, log.read_text()[-3000:]
    assert "stopped" in log.read_text()
    survivors = _processes_mentioning(str(var))
    assert not survivors, f"left running: {survivors}"
    for pid in state["children"].values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
