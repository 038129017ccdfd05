"""``cloud-collector run`` with the API in a process of its own (``[http] processes``): it
answers with tokens, comes back after a SIGKILL while ingest goes on acknowledging, and
nothing is left running after the collector stops or dies."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from harness.collector import CollectorProcess, publish_until_acked, write_config
from harness.mosquitto import MosquittoHarness, free_port

pytestmark = pytest.mark.integration

WAIT_S = 60.0  # the bound of every wait; each ends as soon as its condition holds


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoHarness]:
    with MosquittoHarness(tmp_path) as b:
        yield b


@pytest.fixture
def collector(tmp_path: Path, broker: MosquittoHarness) -> Iterator[CollectorProcess]:
    http_port = free_port()
    cfg = write_config(
        tmp_path / "c.toml", mqtt_port=broker.port, http_port=http_port,
        store_url=f"sqlite:///{tmp_path}/store.sqlite3", api_processes=1,
    )  # fmt: skip
    c = CollectorProcess(cfg, http_port, tmp_path / "c.log")
    c.start()
    try:
        yield c
    finally:
        c.kill()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        time.sleep(0.05)


def _answers(c: CollectorProcess) -> bool:
    try:
        return c.get("/v1/events").status_code == 200
    except httpx.HTTPError:
        return False


def test_a_killed_api_process_comes_back_and_ingest_goes_on(
    collector: CollectorProcess, broker: MosquittoHarness
) -> None:
    assert collector.proc is not None
    parent = collector.proc.pid
    [child] = _children(parent)
    assert collector.get("/v1/events").status_code == 200
    assert collector.request("/v1/events", {}, authed=False).status_code == 401
    os.kill(child, signal.SIGKILL)
    # Ingest acknowledges while the API process is dead or starting again.
    tracker = asyncio.run(publish_until_acked(broker.port, [("taxi-1", 1, s) for s in (1, 2, 3)]))
    assert tracker.acked[("taxi-1", 1)] == 3
    _until(lambda: _answers(collector), "the API answers again")
    [again] = _children(parent)
    assert again != child
    events = collector.get("/v1/events").json()["features"]
    assert {f["properties"]["vehicle"] for f in events} == {"taxi-1"}
    assert "API process 0 killed by SIGKILL" in collector.log_path.read_text()
    assert "collector_http_refused_total" in collector.get("/metrics").text
    assert collector.terminate() == 0
    _until(lambda: not _alive(again), "the API process ends with the collector")


def test_the_api_process_does_not_outlive_a_killed_collector(collector: CollectorProcess) -> None:
    assert collector.proc is not None
    [child] = _children(collector.proc.pid)
    collector.proc.kill()
    collector.proc.wait(10)
    _until(lambda: not _alive(child), "the API process ends after the collector's SIGKILL")
