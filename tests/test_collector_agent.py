"""End to end with the real edge agent: ``edge-agent replay`` of the fixture drive into a
``cloud-collector run`` process; the API must return exactly the drive's events."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.mosquitto_harness import MosquittoHarness, free_port
from tests.support.agent_config import replay_config_toml
from tests.test_collector_support import REPO, CollectorProcess, write_config

pytestmark = pytest.mark.integration
DRIVE = REPO / "hw_fixtures" / "drives" / "drive.log"
EDGE_AGENT = Path(sys.executable).parent / "edge-agent"


def _agent_config(path: Path, mqtt_port: int) -> Path:
    path.write_text(
        replay_config_toml(
            vehicle="taxi-e2e",
            fleet="demo",
            recording=DRIVE,
            outbox=path.parent / "outbox.sqlite3",
            mqtt_port=mqtt_port,
        )
    )
    return path


def _decoded() -> Counter[tuple[str, str]]:
    out = subprocess.run(
        [str(EDGE_AGENT), "decode", str(DRIVE)], capture_output=True, check=True, timeout=120
    )
    rows = [json.loads(line) for line in out.stdout.decode().splitlines() if line.strip()]
    return Counter((r["type"], r["time"]) for r in rows)


@pytest.mark.skipif(not EDGE_AGENT.exists() or not DRIVE.exists(), reason="no edge agent")
def test_replay_fixture_drive_into_collector(tmp_path: Path) -> None:
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
            agent_dir = tmp_path / "agent"
            agent_dir.mkdir()
            agent_cfg = _agent_config(agent_dir / "agent.toml", broker.port)
            done = subprocess.run(
                [str(EDGE_AGENT), "replay", str(DRIVE), "--config", str(agent_cfg),
                 "--speed", "0", "--timeout", "60"],
                capture_output=True, timeout=180, cwd=agent_dir, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr.decode()[-3000:]
            got: Counter[tuple[str, str]] = Counter()
            cursor: str | None = None
            for _ in range(100):
                params = {"limit": "1000", "vehicle": "taxi-e2e"}
                if cursor:
                    params["cursor"] = cursor
                body = collector.get("/v1/events", **params).json()
                got.update(
                    (f["properties"]["type"], f["properties"]["time"]) for f in body["features"]
                )
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            expected = _decoded()
            assert expected
            assert got == expected
            v = collector.get("/v1/vehicles/taxi-e2e").json()
            assert v["batches_total"] >= 1
            assert v["duplicates"] >= 0
            assert collector.terminate() == 0
        finally:
            collector.kill()
            shutil.rmtree(agent_dir, ignore_errors=True)
