"""Two agents with the same vehicle id (two outbox files, so two epochs) publishing at the
same time, as real ``edge-agent replay`` processes into a ``cloud-collector run`` process:
the collector raises a ``two_epochs`` alert naming the vehicle and both epochs. The drive
(106 s) is replayed at 8x, so both agents publish over the same ~13 s, as two agents in
the field would (at full speed each could be done before the other connects)."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from cloud_collector.alerts import TWO_EPOCHS
from tests.mosquitto_harness import MosquittoHarness, free_port
from tests.support.agent_config import replay_config_toml
from tests.test_collector_agent import DRIVE, EDGE_AGENT
from tests.test_collector_support import CollectorProcess, write_config

pytestmark = pytest.mark.integration
VEHICLE = "taxi-twin"


def outbox_epoch(path: Path, timeout_s: float = 45.0) -> int:
    """The epoch an agent minted for its outbox file (bounded wait for its creation)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error):
            if not path.exists():
                raise sqlite3.OperationalError("not created yet")
            with contextlib.closing(sqlite3.connect(path, timeout=1)) as c:
                row = c.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
            if row is not None:
                return int(row[0])
        time.sleep(0.1)
    raise AssertionError(f"no epoch in {path}")


@pytest.mark.skipif(not EDGE_AGENT.exists() or not DRIVE.exists(), reason="no edge agent")
def test_two_agents_one_vehicle_raise_an_alert(tmp_path: Path) -> None:
    with MosquittoHarness(tmp_path, persistence=True) as broker:
        http_port = free_port()
        cfg = write_config(
            tmp_path / "collector.toml",
            mqtt_port=broker.port,
            http_port=http_port,
            store_url=f"sqlite:///{tmp_path / 'twin.sqlite3'}",
        )
        collector = CollectorProcess(cfg, http_port, tmp_path / "collector.log")
        collector.start()
        agents: list[subprocess.Popen[bytes]] = []
        try:
            outboxes = []
            for name in ("a", "b"):
                d = tmp_path / name
                d.mkdir()
                outbox = d / "outbox.sqlite3"
                (d / "agent.toml").write_text(
                    replay_config_toml(
                        vehicle=VEHICLE, fleet="demo", recording=DRIVE, outbox=outbox,
                        mqtt_port=broker.port, mqtt_extra="resend_after_ms = 2000",
                    )
                )  # fmt: skip
                agents.append(
                    subprocess.Popen(
                        [str(EDGE_AGENT), "replay", str(DRIVE), "--config", str(d / "agent.toml"),
                         "--speed", "8", "--timeout", "30"],
                        cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )
                )  # fmt: skip
                outboxes.append(outbox)
            epochs = {outbox_epoch(p) for p in outboxes}
            assert len(epochs) == 2
            found: list[dict[str, object]] = []
            deadline = time.monotonic() + 60
            while not found and time.monotonic() < deadline:
                found = collector.get("/v1/alerts", kind=TWO_EPOCHS).json()
                time.sleep(0.3)
            if not found:
                with contextlib.closing(sqlite3.connect(tmp_path / "twin.sqlite3")) as c:
                    rows = c.execute(
                        "SELECT epoch, acked_seq, first_rx_ms, last_rx_ms FROM epoch_acks"
                    ).fetchall()
            assert found, ("no two_epochs alert", epochs, rows)
            [alert] = found
            assert alert["vehicle"] == VEHICLE
            assert alert["severity"] == "critical"
            message = str(alert["message"])
            assert all(str(e) in message for e in epochs), (message, epochs)
            vehicle = collector.get(f"/v1/vehicles/{VEHICLE}").json()
            assert TWO_EPOCHS in {a["kind"] for a in vehicle["alerts"]}
        finally:
            for a in agents:
                a.kill()
                a.wait(10)
            collector.kill()
