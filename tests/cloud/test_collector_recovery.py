"""``cloud-collector run`` as a real process against faults of its surroundings: another
process locking the SQLite store for longer than the busy timeout, and an HTTP port that
is already taken."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cloud_collector.store.sqlite import BUSY_TIMEOUT_MS
from harness.collector import (
    REPO,
    AckTracker,
    CollectorProcess,
    publish_until_acked,
    write_config,
)
from harness.mosquitto import MosquittoHarness, free_port

pytestmark = pytest.mark.integration

# Longer than the busy timeout, shorter than two of them: the first transaction gives up,
# and whatever was queued behind it gets the lock once it is released.
LOCK_HELD_S = BUSY_TIMEOUT_MS / 1000 + 5
RECOVERY_S = 10.0
_LOCKER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.rollback()
print("released", flush=True)
"""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoHarness]:
    with MosquittoHarness(tmp_path, persistence=True) as b:
        yield b


def _ready(c: CollectorProcess) -> bool:
    try:
        return c.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


async def test_store_locked_by_another_process_then_released(
    tmp_path: Path, broker: MosquittoHarness
) -> None:
    db = tmp_path / "store.sqlite3"
    http_port = free_port()
    cfg = write_config(
        tmp_path / "collector.toml",
        mqtt_port=broker.port,
        http_port=http_port,
        store_url=f"sqlite:///{db}",
    )
    c = CollectorProcess(cfg, http_port, tmp_path / "collector.log")
    c.start()
    vehicles = [f"taxi-{v}" for v in range(6)]
    try:
        before = [(v, 500, s) for v in vehicles for s in range(1, 4)]
        await asyncio.wait_for(publish_until_acked(broker.port, before, timeout_s=20), 25)
        locker = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _LOCKER, str(db), str(LOCK_HELD_S),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert locker.stdout is not None
            assert (await locker.stdout.readline()).strip() == b"locked"
            # Agents keep sending while the store is locked; the load balancer keeps asking.
            during = [(v, 500, s) for v in vehicles for s in range(4, 10)]
            tracker = AckTracker()
            pub = asyncio.create_task(
                publish_until_acked(
                    broker.port, during, tracker=tracker, timeout_s=LOCK_HELD_S + 40,
                    resend_after_s=2.0, client_id="agents-during",
                )
            )  # fmt: skip
            while locker.returncode is None:
                await asyncio.to_thread(_ready, c)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(locker.wait(), 0.5)
            assert (await locker.stdout.readline()).strip() == b"released"
            released = time.monotonic()
            await asyncio.wait_for(pub, RECOVERY_S + 30)
            acked_after_s = time.monotonic() - released
            assert tracker.done({(v, 500): 9 for v in vehicles})
        finally:
            if locker.returncode is None:
                locker.kill()
            await locker.wait()
        ready = False
        while not ready and time.monotonic() - released < RECOVERY_S:
            ready = await asyncio.to_thread(_ready, c)
        assert ready, c.log_path.read_text()[-3000:]
        assert acked_after_s < RECOVERY_S, acked_after_s
        status = {v["vehicle"]: v for v in c.get("/v1/vehicles").json()["vehicles"]}
        assert [status[v]["batches_total"] for v in vehicles] == [9] * len(vehicles)
        assert c.terminate() == 0
    finally:
        c.kill()


def test_http_port_in_use_refuses_to_start(tmp_path: Path, broker: MosquittoHarness) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = write_config(
            tmp_path / "collector.toml",
            mqtt_port=broker.port,
            http_port=port,
            store_url=f"sqlite:///{tmp_path / 'store.sqlite3'}",
        )
        try:
            done = subprocess.run(
                [str(Path(sys.executable).parent / "cloud-collector"), "run", "--config", str(cfg)],
                cwd=REPO,
                check=False,
                capture_output=True,
                text=True,
                timeout=60,  # start-up alone takes seconds on a loaded machine
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"still running with port {port} taken") from exc
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert "in use" in lines[0]
    assert "Traceback" not in done.stdout + done.stderr


class _NotifySocket:
    """systemd's side of sd_notify: an abstract datagram socket, messages time-stamped."""

    def __init__(self) -> None:
        self.name = f"@collector-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.name[1:].encode())
        self.sock.setblocking(False)
        self.got: list[tuple[float, str]] = []

    def drain(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            now = time.monotonic()
            self.got += [(now, line) for line in data.decode().splitlines()]

    async def pump(self) -> None:
        """Receive continuously, so each message is stamped when it arrives."""
        while True:
            self.drain()
            await asyncio.sleep(0.05)

    def times(self, line: str, start: float, end: float = float("inf")) -> list[float]:
        self.drain()
        return [t for t, text in self.got if text == line and start <= t < end]


async def test_watchdog_pings_stop_while_the_store_is_stuck_and_resume(
    tmp_path: Path, broker: MosquittoHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "store.sqlite3"
    http_port = free_port()
    cfg = write_config(
        tmp_path / "collector.toml",
        mqtt_port=broker.port,
        http_port=http_port,
        store_url=f"sqlite:///{db}",
    )
    notify = _NotifySocket()
    # WatchdogSec=3: pings every 1.5 s while the store moves, none after a 2 s stall.
    monkeypatch.setenv("NOTIFY_SOCKET", notify.name)
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    c = CollectorProcess(cfg, http_port, tmp_path / "collector.log")
    hold_s = BUSY_TIMEOUT_MS / 1000 - 2  # the store's transactions wait, and do not fail
    try:
        started = time.monotonic()
        c.start()
        pump = asyncio.create_task(notify.pump())
        await asyncio.sleep(3.5)
        assert notify.times("READY=1", started)
        assert len(notify.times("WATCHDOG=1", started)) >= 2
        locker = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _LOCKER, str(db), str(hold_s), stdout=asyncio.subprocess.PIPE
        )
        assert locker.stdout is not None
        assert (await locker.stdout.readline()).strip() == b"locked"
        locked = time.monotonic()
        items = [("taxi-w", 600, s) for s in range(1, 4)]
        pub = asyncio.create_task(publish_until_acked(broker.port, items, timeout_s=30))
        assert (await locker.stdout.readline()).strip() == b"released"
        released = time.monotonic()
        await locker.wait()
        tracker = await asyncio.wait_for(pub, 35)
        assert tracker.done({("taxi-w", 600): 3})
        await asyncio.sleep(2.0)
        # Stalled: nothing between 3 s into the lock and its release.
        assert notify.times("WATCHDOG=1", locked + 3.0, released) == []
        # Resumed within seconds of the release.
        resumed = notify.times("WATCHDOG=1", released)
        assert resumed
        assert resumed[0] - released < 3.0, resumed
        assert c.terminate() == 0
        assert notify.times("STOPPING=1", released)
        pump.cancel()
    finally:
        c.kill()
        notify.sock.close()
