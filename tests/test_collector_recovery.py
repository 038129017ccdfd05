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
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cloud_collector.store.sqlite import BUSY_TIMEOUT_MS
from tests.mosquitto_harness import MosquittoHarness, free_port
from tests.test_collector_support import (
    REPO,
    AckTracker,
    CollectorProcess,
    publish_until_acked,
    write_config,
)

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
                timeout=15,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"still running with port {port} taken") from exc
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert "in use" in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
