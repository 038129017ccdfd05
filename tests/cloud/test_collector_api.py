"""The HTTP API over a real SQLite store: answers, 4xx for bad parameters, and a fuzz run
from its own OpenAPI description (schemathesis) that must never see a 5xx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cloud_collector.api import create_app
from cloud_collector.metrics import IngestMetrics
from cloud_collector.store import Store, open_store
from harness.collector import make_batch, payload
from protocol.batch import Batch
from protocol.records import Health
from tests.support.auth import api_client, bearer, mint
from tests.support.examples import examples
from tests.support.fuzz import fuzz, operations_of
from tests.support.metrics_text import metric

VEHICLES = ("taxi-a", "taxi-b")
BATCHES = 4


async def _seed(store: Store) -> None:
    for v in VEHICLES:
        for seq in range(1, BATCHES + 1):
            batch = make_batch(v, 42, seq, events=3)
            await store.ingest(
                batch, topic_channel="batch", payload_bytes=len(payload(v, 42, seq)),
                received_ms=batch.header.sent_ms,
            )  # fmt: skip
    await store.set_presence(fleet="demo", vehicle="taxi-a", online=True, time_ms=1)
    # Health snapshots, so that /v1/alerts and /v1/vehicles/{id}/health have data.
    snaps = Batch.build(
        fleet_id="demo", vehicle_id="taxi-b", epoch=42, seq=BATCHES + 1, sent_ms=1_772_436_600_000,
        health=[Health(1_772_436_600_000, {"outbox_oldest_age_ms": 3_600_000,
                                           "clock_offset_ms": 2500, "camera_failsafe": True})],
    )  # fmt: skip
    await store.ingest(snaps, topic_channel="health", payload_bytes=300, received_ms=1)
    await store.set_presence(fleet="demo", vehicle="taxi-b", online=False, time_ms=1)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = await open_store(f"sqlite:///{tmp_path / 'api.sqlite3'}")
    await _seed(store)
    metrics = IngestMetrics()
    metrics.quarantined["bad_msgpack"] += 1
    app = create_app(store, metrics, mqtt_ready=lambda: True)
    async with api_client(app, store.access) as c:
        yield c
    await store.close()


async def test_events_paging_returns_every_event_once(client: httpx.AsyncClient) -> None:
    seen: list[tuple[str, str, str]] = []
    cursor: str | None = None
    for _ in range(50):
        params = {"limit": "5", **({"cursor": cursor} if cursor else {})}
        r = await client.get("/v1/events", params=params)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/geo+json")
        body = r.json()
        assert body["type"] == "FeatureCollection"
        for f in body["features"]:
            p = f["properties"]
            assert p["time"].endswith("Z")
            assert {"type", "time", "vehicle", "speed_kmh", "sound_code"} <= set(p)
            seen.append((p["vehicle"], p["time"], p["type"]))
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == len(VEHICLES) * BATCHES * 3


async def test_event_filters(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/events", params={"vehicle": "taxi-a", "type": "fcw"})
    feats = r.json()["features"]
    assert feats
    assert all(f["properties"]["vehicle"] == "taxi-a" for f in feats)
    assert all(f["properties"]["type"] == "fcw" for f in feats)
    # Events without a fix have a null geometry; a bbox keeps only located ones.
    r = await client.get("/v1/events", params={"bbox": "126,37,128,38"})
    assert all(f["geometry"] is not None for f in r.json()["features"])
    r = await client.get(
        "/v1/events", params={"since": "2026-03-02T07:30:20Z", "until": "2026-03-02T07:30:30Z"}
    )
    times = [f["properties"]["time"] for f in r.json()["features"]]
    assert times
    assert all("2026-03-02T07:30:20" <= t < "2026-03-02T07:30:30" for t in times)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/events", {"bbox": "1,2,3"}),
        ("/v1/events", {"bbox": "10,0,5,1"}),
        ("/v1/events", {"bbox": "0,-91,1,1"}),
        ("/v1/events", {"bbox": "nan,0,1,1"}),
        ("/v1/events", {"since": "yesterday"}),
        ("/v1/events", {"since": "2026-03-02T08:00:00Z", "until": "2026-03-02T07:00:00Z"}),
        ("/v1/events", {"since": "1969-12-31T23:59:59Z"}),
        ("/v1/events", {"limit": "0"}),
        ("/v1/events", {"limit": "100001"}),
        ("/v1/events", {"limit": "x"}),
        ("/v1/events", {"cursor": "garbage!!"}),
        ("/v1/events", {"cursor": "Zm9v"}),
        ("/v1/events", {"vehicle": "a/b"}),
        ("/v1/road-conditions", {"min_exposure": "-1"}),
        ("/v1/road-conditions", {"bbox": "a,b,c,d"}),
        ("/v1/signs", {"bbox": "0,0,181,1"}),
        ("/v1/vehicles/bad%20id", {}),
        ("/v1/vehicles/bad%20id/health", {}),
        ("/v1/vehicles/taxi-a/health", {"limit": "0"}),
        ("/v1/vehicles/taxi-a/health", {"since": "x"}),
        ("/v1/alerts", {"kind": "nope"}),
        ("/v1/alerts", {"vehicle": "a/b"}),
    ],
)
async def test_bad_parameters_are_400(
    client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    r = await client.get(path, params=params)
    assert r.status_code == 400, (r.status_code, r.text)
    assert isinstance(r.json()["detail"], str)


async def test_vehicles_health_and_metrics(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/vehicles")
    assert {v["vehicle"] for v in r.json()["vehicles"]} == set(VEHICLES)
    r = await client.get("/v1/vehicles/taxi-a")
    v = r.json()
    assert v["state"] == "online"
    assert v["last_seq"] == BATCHES
    assert v["batches_total"] == BATCHES
    assert (await client.get("/v1/vehicles/taxi-zz")).status_code == 404
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    text = (await client.get("/metrics")).text
    assert metric(text, "collector_quarantined_total", reason="bad_msgpack") == 1
    assert "# TYPE collector_commit_seconds histogram" in text
    for path in ("/v1/road-conditions", "/v1/signs"):
        r = await client.get(path)
        assert r.status_code == 200
        assert r.json()["type"] == "FeatureCollection"
    assert (await client.get("/openapi.json")).json()["paths"]


def test_fuzz_from_openapi(tmp_path: Path) -> None:
    """Every operation, with generated (valid and invalid) parameters: no 5xx ever."""
    loop = asyncio.new_event_loop()
    try:
        store = loop.run_until_complete(open_store(f"sqlite:///{tmp_path / 'fuzz.sqlite3'}"))
        loop.run_until_complete(_seed(store))
        app = create_app(store, IngestMetrics(), mqtt_ready=lambda: True)
        headers = bearer(loop.run_until_complete(mint(store.access)))
        operations = operations_of(app)
        assert len(operations) >= 10
        paths = {op.path for op in operations}
        assert {"/v1/alerts", "/v1/vehicles/{vehicle_id}/health"} <= paths
        assert "/ogc/collections/{collection_id}/items/{feature_id}" in paths
        assert {"/tiles/{layer}/{z}/{x}/{y}.mvt", "/tiles/{layer}.json"} <= paths
        # The OGC and tile operations: fewer examples (six OGC operations share one
        # parser; each tile operation encodes a tile).
        fuzz(
            operations,
            headers,
            lambda path: examples(15 if path.startswith(("/ogc", "/tiles/")) else 40),
        )
    finally:
        loop.run_until_complete(store.close())
        loop.close()
