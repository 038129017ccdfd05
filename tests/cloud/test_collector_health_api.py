"""The health endpoints of the HTTP API over a real SQLite store, with a fixed clock:
/v1/alerts, the health figures of /v1/vehicles, /v1/vehicles/{id}/health, /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cloud_collector.api import create_app
from cloud_collector.config import AlertsConfig
from cloud_collector.metrics import IngestMetrics
from cloud_collector.store import Store, open_store
from protocol.batch import Batch
from protocol.records import Health
from tests.support.auth import api_client
from tests.support.metrics_text import malformed_lines, metric

T0 = 1_772_436_600_000  # 2026-03-02T07:30:00Z
MIN = 60_000
NOW = T0 + 60 * MIN


def health_batch(vehicle: str, seq: int, t: int, **values: int | bool) -> Batch:
    return Batch.build(
        fleet_id="demo", vehicle_id=vehicle, epoch=9, seq=seq, sent_ms=t,
        health=[Health(t, dict(values))],
    )  # fmt: skip


async def _seed(store: Store) -> None:
    async def put(b: Batch, received_ms: int) -> None:
        await store.ingest(b, topic_channel="health", payload_bytes=700, received_ms=received_ms)

    # taxi-ok: healthy, online. taxi-bad: backlog 45 min, clock 3 s off, tamper; seq 2
    # missing; offline since T0 + 30 min (alert after 10 min).
    await put(health_batch("taxi-ok", 1, NOW - 2000, outbox_pending_batches=0,
                           outbox_oldest_age_ms=0, clock_offset_ms=5), NOW - 1000)  # fmt: skip
    await put(health_batch("taxi-bad", 1, T0, outbox_pending_batches=5), T0 + 1000)
    await put(health_batch("taxi-bad", 3, T0 + 20 * MIN, outbox_pending_batches=270,
                           outbox_oldest_age_ms=45 * MIN, clock_offset_ms=-3000,
                           camera_tamper=True), T0 + 20 * MIN + 4000)  # fmt: skip
    await put(health_batch("taxi-bad", 3, T0 + 20 * MIN), T0 + 21 * MIN)  # duplicate
    await store.set_presence(fleet="demo", vehicle="taxi-ok", online=True, time_ms=T0)
    await store.set_presence(fleet="demo", vehicle="taxi-bad", online=False, time_ms=T0 + 30 * MIN)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = await open_store(f"sqlite:///{tmp_path / 'api.sqlite3'}")
    await _seed(store)
    app = create_app(
        store, IngestMetrics(), thresholds=AlertsConfig(), clock_ms=lambda: NOW, max_limit=500
    )
    async with api_client(app, store.access) as c:
        yield c
    await store.close()


async def test_alerts_endpoint(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/alerts")
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, list)
    assert {(a["vehicle"], a["kind"]) for a in body} == {
        ("taxi-bad", "offline"),
        ("taxi-bad", "backlog_age"),
        ("taxi-bad", "camera_tamper"),
        ("taxi-bad", "clock_offset"),
    }
    offline = next(a for a in body if a["kind"] == "offline")
    assert offline == {
        "vehicle": "taxi-bad",
        "kind": "offline",
        "severity": "critical",
        "since": "2026-03-02T08:00:00.000Z",
        "since_ms": T0 + 30 * MIN,
        "message": "offline for 30 min (threshold 10 min)",
        "value": 1800.0,
    }
    r = await client.get("/v1/alerts", params={"kind": "clock_offset"})
    assert [(a["kind"], a["value"]) for a in r.json()] == [("clock_offset", -3000.0)]
    assert (await client.get("/v1/alerts", params={"vehicle": "taxi-ok"})).json() == []
    assert (await client.get("/v1/alerts", params={"vehicle": "taxi-none"})).json() == []


async def test_vehicle_health_fields(client: httpx.AsyncClient) -> None:
    vehicles = {v["vehicle"]: v for v in (await client.get("/v1/vehicles")).json()["vehicles"]}
    bad = vehicles["taxi-bad"]
    assert bad == (await client.get("/v1/vehicles/taxi-bad")).json()
    assert bad["status"] == "offline"
    assert bad["backlog_batches"] == 270
    assert bad["backlog_age_s"] == 2700.0
    assert bad["data_today_bytes"] == 3 * 700  # duplicates too
    assert bad["lag_s"] == 4.0
    assert bad["seq_gaps"] == 1
    assert bad["duplicate_ratio"] == pytest.approx(1 / 3)
    assert bad["last_seen"] == "2026-03-02T07:51:00.000Z"
    assert {a["kind"] for a in bad["alerts"]} == {
        "offline", "backlog_age", "camera_tamper", "clock_offset"
    }  # fmt: skip
    ok = vehicles["taxi-ok"]
    assert (ok["status"], ok["alerts"], ok["seq_gaps"], ok["duplicate_ratio"]) == (
        "online", [], 0, 0.0
    )  # fmt: skip
    assert (await client.get("/v1/vehicles/taxi-zz")).status_code == 404


async def test_health_history(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/vehicles/taxi-bad/health")
    assert r.status_code == 200, r.text
    series = r.json()
    assert [p["time"] for p in series] == ["2026-03-02T07:30:00.000Z", "2026-03-02T07:50:00.000Z"]
    assert series[1]["values"]["outbox_pending_batches"] == 270
    assert series[1]["time_ms"] == T0 + 20 * MIN
    r = await client.get(
        "/v1/vehicles/taxi-bad/health",
        params={"since": "2026-03-02T07:40:00Z", "until": "2026-03-02T08:00:00Z"},
    )
    assert [p["values"]["outbox_pending_batches"] for p in r.json()] == [270]
    r = await client.get("/v1/vehicles/taxi-bad/health", params={"limit": "1"})
    assert [p["time_ms"] for p in r.json()] == [T0 + 20 * MIN]
    assert (await client.get("/v1/vehicles/taxi-zz/health")).status_code == 404


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/alerts", {"kind": "bogus"}),
        ("/v1/alerts", {"vehicle": "a b"}),
        ("/v1/vehicles/bad%20id/health", {}),
        ("/v1/vehicles/taxi-bad/health", {"limit": "0"}),
        ("/v1/vehicles/taxi-bad/health", {"limit": "501"}),
        ("/v1/vehicles/taxi-bad/health", {"limit": "ten"}),
        ("/v1/vehicles/taxi-bad/health", {"since": "soon"}),
        ("/v1/vehicles/taxi-bad/health", {"since": "2026-03-03", "until": "2026-03-02"}),
    ],
)
async def test_bad_parameters_are_400(
    client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    r = await client.get(path, params=params)
    assert r.status_code == 400, (r.status_code, r.text)
    assert isinstance(r.json()["detail"], str)


async def test_metrics_gauges(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    assert "# TYPE collector_alerts_active gauge" in text
    assert malformed_lines(text) == []
    assert metric(text, "collector_alerts_active", kind="offline") == 1
    assert metric(text, "collector_alerts_active", kind="data_plan") == 0
    bad = {
        "vehicle_backlog_age_seconds": 2700,
        "vehicle_online": 0,
        "vehicle_seq_gaps": 1,
        "vehicle_alerts_active": 4,
        "vehicle_data_today_bytes": 2100,
    }
    assert {name: metric(text, name, vehicle="taxi-bad") for name in bad} == bad
    assert metric(text, "vehicle_backlog_batches", vehicle="taxi-ok") == 0
