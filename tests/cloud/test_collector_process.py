"""``cloud-collector run`` as a real process: SIGKILL mid-stream, two collectors in one
group with one killed, and a clean SIGTERM stop. Nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.collector import (
    AckTracker,
    CollectorProcess,
    make_batch,
    publish_until_acked,
    write_config,
)
from harness.mosquitto import MosquittoHarness, free_port
from harness.postgres import PgHarness

pytestmark = pytest.mark.integration
_db_names = itertools.count()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoHarness]:
    with MosquittoHarness(tmp_path, persistence=True) as b:
        yield b


def _collector(
    tmp_path: Path, broker: MosquittoHarness, store_url: str, name: str = "collector-1"
) -> CollectorProcess:
    http_port = free_port()
    cfg = write_config(
        tmp_path / f"{name}.toml",
        mqtt_port=broker.port,
        http_port=http_port,
        store_url=store_url,
        client_id=name,
    )
    return CollectorProcess(cfg, http_port, tmp_path / f"{name}.log")


def _api_events(c: CollectorProcess) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    cursor: str | None = None
    for _ in range(200):
        params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
        body = c.get("/v1/events", **params).json()
        out += [
            (f["properties"]["vehicle"], f["properties"]["time"], f["properties"]["type"])
            for f in body["features"]
        ]
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("too many pages")


def _expected(items: list[tuple[str, int, int]]) -> int:
    return sum(len(make_batch(v, e, s).events) for v, e, s in items)


async def _wait_acks(tracker: AckTracker, n: int, timeout_s: float = 30) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if tracker.count >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no acks")


async def test_sigkill_mid_stream_loses_and_doubles_nothing(
    tmp_path: Path, broker: MosquittoHarness
) -> None:
    url = f"sqlite:///{tmp_path / 'kill.sqlite3'}"
    c = _collector(tmp_path, broker, url)
    c.start()
    items = [(f"taxi-{v}", 900 + v, s) for v in range(4) for s in range(1, 51)]
    tracker = AckTracker()
    try:
        pub = asyncio.create_task(
            publish_until_acked(broker.port, items, tracker=tracker, timeout_s=90,
                                resend_after_s=2.0)
        )  # fmt: skip
        await _wait_acks(tracker, 20)
        c.kill()  # SIGKILL, mid-stream
        await asyncio.sleep(0.5)
        await asyncio.to_thread(c.start)
        await asyncio.wait_for(pub, 100)
        assert tracker.done({(f"taxi-{v}", 900 + v): 50 for v in range(4)})
        assert tracker.regressions == 0  # one collector never sends a lower ack
        events = _api_events(c)
        assert len(events) == len(set(events)) == _expected(items)
        vehicles = c.get("/v1/vehicles").json()["vehicles"]
        assert sorted(v["batches_total"] for v in vehicles) == [50] * 4
        assert c.terminate() == 0  # SIGTERM: clean stop, exit status 0
    finally:
        c.kill()


async def test_two_collectors_one_killed(
    tmp_path: Path,
    broker: MosquittoHarness,
    pg_server: PgHarness,
) -> None:
    url = pg_server.create_database(f"two{next(_db_names)}")
    a = _collector(tmp_path, broker, url, "collector-a")
    b = _collector(tmp_path, broker, url, "collector-b")
    a.start()
    b.start()
    items = [(f"taxi-{v}", 700 + v, s) for v in range(4) for s in range(1, 41)]
    tracker = AckTracker()
    try:
        pub = asyncio.create_task(
            publish_until_acked(broker.port, items, tracker=tracker, timeout_s=120,
                                resend_after_s=1.5)
        )  # fmt: skip
        await _wait_acks(tracker, 10)
        b.kill()  # for good: its queued share is recovered by the agent's re-sends
        await asyncio.wait_for(pub, 130)
        assert tracker.done({(f"taxi-{v}", 700 + v): 40 for v in range(4)})
        events = _api_events(a)
        assert len(events) == len(set(events)) == _expected(items)
        vehicles = a.get("/v1/vehicles").json()["vehicles"]
        assert sorted(v["batches_total"] for v in vehicles) == [40] * 4
    finally:
        a.kill()
        b.kill()
