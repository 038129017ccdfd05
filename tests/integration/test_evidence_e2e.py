"""Raw evidence end to end: ``edge-agent replay`` of the fixture drive through a real
mosquitto into a ``cloud-collector run`` process; an urgent event's frames downloaded from
``/v1/events/{id}/frames`` decode (``edge-agent decode``) to the same event again."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.agent import EDGE_AGENT, replay_config_toml
from harness.agent import FIXTURE as DRIVE
from harness.collector import CollectorProcess, write_config
from harness.mosquitto import MosquittoHarness, free_port
from protocol.contracts import URGENT_EVENT_TYPES

pytestmark = pytest.mark.integration


def _events(collector: CollectorProcess) -> list[dict[str, Any]]:
    features: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(100):
        params = {"limit": "1000", "vehicle": "taxi-evd"}
        if cursor:
            params["cursor"] = cursor
        body = collector.get("/v1/events", **params).json()
        features += body["features"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    return features


def _decode(recording: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(EDGE_AGENT), "decode", str(recording)], capture_output=True, check=True, timeout=120
    )
    return [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]


def test_urgent_event_frames_download_and_decode_to_the_same_event(tmp_path: Path) -> None:
    with MosquittoHarness(tmp_path, persistence=True) as broker:
        http_port = free_port()
        cfg = write_config(
            tmp_path / "collector.toml",
            mqtt_port=broker.port,
            http_port=http_port,
            store_url=f"sqlite:///{tmp_path / 'evidence.sqlite3'}",
        )
        collector = CollectorProcess(cfg, http_port, tmp_path / "collector.log")
        collector.start()
        agent_dir = tmp_path / "agent"
        agent_dir.mkdir()
        try:
            (agent_dir / "agent.toml").write_text(
                replay_config_toml(
                    vehicle="taxi-evd", fleet="demo", recording=DRIVE,
                    outbox=agent_dir / "outbox.sqlite3", mqtt_port=broker.port,
                )
            )  # fmt: skip
            done = subprocess.run(
                [str(EDGE_AGENT), "replay", str(DRIVE), "--config", str(agent_dir / "agent.toml"),
                 "--speed", "0", "--timeout", "60"],
                capture_output=True, timeout=180, cwd=agent_dir, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr.decode()[-3000:]
            urgent = [
                f for f in _events(collector) if f["properties"]["type"] in URGENT_EVENT_TYPES
            ]
            assert urgent, "the fixture drive has urgent events"
            checked = 0
            for feature in urgent[:3]:
                response = collector.get(f"/v1/events/{feature['id']}/frames")
                assert response.status_code == 200, response.text
                log = tmp_path / f"event-{feature['id']}.log"
                log.write_text(response.text)
                again = {(e["type"], e["time"]) for e in _decode(log)}
                props = feature["properties"]
                assert (props["type"], props["time"]) in again
                checked += 1
            assert checked
            assert collector.terminate() == 0
        finally:
            collector.kill()
            shutil.rmtree(agent_dir, ignore_errors=True)
