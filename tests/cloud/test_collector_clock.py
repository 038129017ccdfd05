"""Vehicle clocks far ahead of the collector's (a real mosquitto, the real Ingestor and
SQLite store, the HTTP API over the same store): a status, a health snapshot and a batch
stamped at 2^53 - 1 ms never pin the vehicle's presence or latest health in the future,
later normal messages take over, and the offset is flagged (alert, API figure, metric)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import aiomqtt
import httpx
import pytest

from cloud_collector.alerts import CLOCK_AHEAD, OFFLINE
from cloud_collector.api import create_app
from cloud_collector.metrics import IngestMetrics
from cloud_collector.store import Store
from harness.collector import FLEET
from harness.mosquitto import MosquittoHarness
from protocol import Presence, Status, encode_status
from protocol.limits import MAX_TIME_MS
from protocol.records import Scalar
from tests.support.auth import api_client
from tests.support.health_feed import Clock, health_batch, publish_acked
from tests.support.ingest_run import collector

pytestmark = pytest.mark.integration
MIN = 60_000
FAR = MAX_TIME_MS  # what a vehicle can send on purpose


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@contextlib.asynccontextmanager
async def api(store: Store, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, IngestMetrics(), clock_ms=clock)
    async with api_client(app, store.access) as c:
        yield c


async def publish_status(port: int, vehicle: str, state: Presence, t: int) -> None:
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as c:
        status = encode_status(Status(state=state, time_ms=t))
        await c.publish(f"fleet/{FLEET}/{vehicle}/status", status, qos=1, retain=True)


async def test_future_clock_does_not_pin_presence_or_latest(
    broker: MosquittoHarness, store: Store
) -> None:
    v = "taxi-f"
    clock = Clock()
    # Retained before the collector subscribes: it arrives with the retain flag, where
    # the vehicle's own time is all there is.
    await publish_status(broker.port, v, Presence.ONLINE, FAR)
    async with collector(broker, store) as run, api(store, clock) as http:

        async def presence(state: bool) -> bool:
            s = await store.vehicle(v)
            return s is not None and s.online is state

        await run.wait_for(lambda: presence(True))
        status = await store.vehicle(v)
        assert status is not None
        assert status.presence_ms is not None
        assert status.presence_ms <= wall_ms()
        # A health snapshot stamped at the end of time, then a normal one.
        assert await publish_acked(broker.port, v, health_batch(v, 1, FAR, {"x": 1}), 1) == 1
        body = (await http.get(f"/v1/vehicles/{v}")).json()
        assert body["clock_ahead_s"] > 10 * 365 * 86_400
        kinds = {a["kind"] for a in body["alerts"]}
        assert CLOCK_AHEAD in kinds
        metrics = (await http.get("/metrics")).text
        assert f'vehicle_clock_ahead_seconds{{vehicle="{v}"}}' in metrics
        now = wall_ms()
        values: dict[str, Scalar] = {"outbox_oldest_age_ms": 0, "x": 2}
        assert await publish_acked(broker.port, v, health_batch(v, 2, now, values), 2) == 2
        [latest] = (await http.get(f"/v1/vehicles/{v}/health", params={"limit": "1"})).json()
        # History keeps each record's own time; "latest" is the normal snapshot.
        states = await store.vehicle_health(v)
        assert states[0].latest_health is not None
        assert states[0].latest_health.values["x"] == 2
        assert latest["time_ms"] == FAR  # the history is ordered by the records' own time
        # The vehicle goes offline (a live status): presence follows, and the offline
        # alert fires once the collector's clock says it has been long enough.
        await publish_status(broker.port, v, Presence.OFFLINE, wall_ms())
        await run.wait_for(lambda: presence(False))
        clock.offset_ms = 11 * MIN
        alerts = (await http.get("/v1/alerts", params={"vehicle": v})).json()
        assert OFFLINE in {a["kind"] for a in alerts}
        # The offset stays flagged for the hold time after the last message ahead.
        assert CLOCK_AHEAD in {a["kind"] for a in alerts}
        assert run.metrics.clock_ahead >= 2  # the retained status and the batch
        clock.offset_ms = 61 * MIN
        alerts = (await http.get("/v1/alerts", params={"vehicle": v})).json()
        assert CLOCK_AHEAD not in {a["kind"] for a in alerts}
        assert (await http.get(f"/v1/vehicles/{v}")).json()["clock_ahead_s"] == 0


async def test_future_batch_then_normal_batches(broker: MosquittoHarness, store: Store) -> None:
    """A batch ten years ahead, then normal ones: the latest snapshot is the newest
    normal one, and every record keeps its own time in the history."""
    v = "taxi-g"
    ten_years = 10 * 365 * 86_400_000
    async with collector(broker, store):
        now = wall_ms()
        assert await publish_acked(broker.port, v, health_batch(v, 1, now + ten_years, {"n": 1}), 1)
        for seq in (2, 3):
            data = health_batch(v, seq, wall_ms(), {"n": seq})
            assert await publish_acked(broker.port, v, data, seq) == seq
    [state] = await store.vehicle_health(v)
    assert state.latest_health is not None
    assert state.latest_health.values["n"] == 3
    assert state.clock_ahead_ms is not None
    assert state.clock_ahead_ms > ten_years - MIN
