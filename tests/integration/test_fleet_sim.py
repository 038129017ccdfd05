"""``fleet-sim`` end to end: 20 simulated taxis for a simulated hour through a real
mosquitto into the collector on SQLite; every outbox acknowledged, and ``score`` finds the
planted hotspots, worn lanes, rain and signs through the public API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.collector import CollectorProcess, mint_token, write_config
from harness.mosquitto import MosquittoHarness, free_port

pytestmark = pytest.mark.integration

TAXIS = 20
# One simulated hour in 18 s of real time; its 6-minute city-wide outage is 2 s.
SPEED = 200
# Strong enough for 20 taxi-hours of exposure to tell the sites from the background; the
# bench runs the default factor at fleet size.
HAZARD_FACTOR = 100


def _fleet_sim(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet_sim", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _score_args(truth: Path, api: str, token: str) -> list[str]:
    """The one place the test's calls to the collector's API are built."""
    return ["score", str(truth), "--api", api, "--token", token]


def test_a_city_hour_through_the_real_edge_code_scores(tmp_path: Path) -> None:
    with MosquittoHarness(tmp_path) as broker:
        http_port = free_port()
        cfg = write_config(
            tmp_path / "collector.toml",
            mqtt_port=broker.port,
            http_port=http_port,
            store_url=f"sqlite:///{tmp_path / 'store.sqlite3'}",
        )
        collector = CollectorProcess(cfg, http_port, tmp_path / "collector.log")
        collector.start()
        try:
            out = tmp_path / "out"
            run = _fleet_sim(
                "run", "--taxis", str(TAXIS), "--hours", "1", "--speed", str(SPEED),
                "--broker", f"127.0.0.1:{broker.port}", "--out", str(out), "--seed", "3",
                "--processes", "2", "--timeout", "90", "--hazard-factor", str(HAZARD_FACTOR),
                "--reconnect-max-s", "5",
                timeout_s=120,
            )  # fmt: skip
            assert run.returncode == 0, run.stderr[-3000:]
            summary = json.loads(run.stdout.strip().splitlines()[-1])["summary"]
            assert summary["taxis_done"] == TAXIS
            assert summary["records"] > 10_000
            assert "online" in run.stderr  # the progress line
            assert (out / "truth.json").is_file()
            assert len(list((out / "outbox").glob("t*.sqlite3"))) == TAXIS
            vehicles = collector.get("/v1/vehicles").json()
            assert len(vehicles["vehicles"] if isinstance(vehicles, dict) else vehicles) == TAXIS
            api = f"http://127.0.0.1:{http_port}"
            # As the city's traffic backend asks: a city token, so k-anonymous cells only.
            city = mint_token(cfg, "traffic-backend", role="city")
            scored = _fleet_sim(*_score_args(out / "truth.json", api, city), timeout_s=60)
            assert scored.returncode == 0, scored.stdout + scored.stderr
            result = json.loads(scored.stdout.strip().splitlines()[-1])
            assert result["hotspot_precision"] >= 0.9
            assert result["hotspot_recall"] >= 0.9
            assert result["signs_found"] == result["signs_planted"]
            assert result["sign_median_error_m"] < 10
        finally:
            collector.terminate()
