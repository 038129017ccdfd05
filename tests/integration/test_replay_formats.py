"""``edge-agent replay`` of a SavvyCAN/GVRET CSV and of an MDF4 recording into a real
``cloud-collector run`` through a real mosquitto: the API returns what ``decode`` finds."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from harness.agent import EDGE_AGENT, make_recording, replay_config_toml
from harness.collector import CollectorProcess, write_config
from harness.mosquitto import MosquittoHarness, free_port
from tests.support.recordings import convert

pytestmark = pytest.mark.integration

# The first lane departures and the headway warning of the fixture drive.
SECONDS = 32.0
# python-can's MF4Writer stores the start in local time without a zone: write and read in one.
UTC = {**os.environ, "TZ": "UTC"}


def _events_via_api(collector: CollectorProcess, vehicle: str) -> Counter[tuple[str, str]]:
    body = collector.get("/v1/events", limit="1000", vehicle=vehicle).json()
    assert body["next_cursor"] is None
    return Counter((f["properties"]["type"], f["properties"]["time"]) for f in body["features"])


def _decoded(recording: Path) -> Counter[tuple[str, str]]:
    out = subprocess.run(
        [str(EDGE_AGENT), "decode", str(recording)],
        capture_output=True, check=True, timeout=120, env=UTC,
    )  # fmt: skip
    rows = [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]
    return Counter((r["type"], r["time"]) for r in rows)


def _replay(tmp: Path, recording: Path, vehicle: str, mqtt_port: int) -> None:
    config = tmp / f"{vehicle}.toml"
    toml = replay_config_toml(
        vehicle=vehicle,
        fleet="demo",
        recording=recording,
        outbox=tmp / f"{vehicle}.sqlite3",
        mqtt_port=mqtt_port,
    )
    # Both formats number their buses where candump names them.
    config.write_text(toml.replace('"can0"', '"0"').replace('"can1"', '"1"'))
    done = subprocess.run(
        [str(EDGE_AGENT), "replay", str(recording), "--config", str(config),
         "--speed", "0", "--timeout", "60"],
        capture_output=True, timeout=180, cwd=tmp, check=False, env=UTC,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-3000:]


def test_replay_gvret_csv_and_mf4_into_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = make_recording(tmp_path / "drive.log", SECONDS)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    recordings = {s: convert(log, tmp_path / f"drive{s}") for s in (".csv", ".mf4")}
    monkeypatch.undo()
    time.tzset()
    expected = _decoded(log)
    assert expected
    with MosquittoHarness(tmp_path, persistence=True) as broker:
        http_port = free_port()
        cfg = write_config(
            tmp_path / "collector.toml",
            mqtt_port=broker.port,
            http_port=http_port,
            store_url=f"sqlite:///{tmp_path / 'e2e.sqlite3'}",
        )
        collector = CollectorProcess(cfg, http_port, tmp_path / "collector.log")
        collector.start()
        try:
            for suffix, recording in recordings.items():
                vehicle = f"taxi-{suffix[1:]}"
                assert _decoded(recording) == expected
                _replay(tmp_path, recording, vehicle, broker.port)
                assert _events_via_api(collector, vehicle) == expected
            assert collector.terminate() == 0
        finally:
            collector.kill()
