"""Health end to end: a real mosquitto, the real Ingestor and store, the HTTP API over the
same store with a controllable clock. Health records in batches raise alerts that clear
when a later snapshot recovers; a will message raises "offline" once enough time passed;
an unknown-version batch is quarantined AND acknowledged end to end."""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from collections.abc import AsyncIterator

import aiomqtt
import httpx
import pytest

from cloud_collector.api import create_app
from cloud_collector.metrics import IngestMetrics
from cloud_collector.store import Store, open_store
from harness.collector import FLEET, payload, unknown_version
from harness.mosquitto import MosquittoHarness
from harness.postgres import PgHarness
from protocol import Presence, Status, encode_status
from protocol.records import Scalar
from tests.support.auth import api_client
from tests.support.health_feed import Clock, health_batch, publish_acked
from tests.support.ingest_run import collector
from tests.support.metrics_text import metric

pytestmark = pytest.mark.integration
MIN = 60_000
MS = 1_000_000  # ns per ms
_db_names = itertools.count()


@contextlib.asynccontextmanager
async def api(store: Store, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, IngestMetrics(), clock_ms=clock)
    async with api_client(app, store.access) as c:
        yield c


async def kinds(http: httpx.AsyncClient, vehicle: str) -> set[str]:
    r = await http.get("/v1/alerts", params={"vehicle": vehicle})
    assert r.status_code == 200, r.text
    return {a["kind"] for a in r.json()}


async def test_health_alerts_appear_and_clear(broker: MosquittoHarness, store: Store) -> None:
    clock = Clock()
    now = clock()
    bad: dict[str, Scalar] = {
        "outbox_pending_batches": 400, "outbox_oldest_age_ms": 45 * MIN,
        "clock_offset_ms": 3200, "camera_failsafe": True, "camera_tamper": False,
        "uplink_connected": True, "agent_version": "1.2.0",
    }  # fmt: skip
    good: dict[str, Scalar] = {
        **bad, "outbox_pending_batches": 1, "outbox_oldest_age_ms": 900,
        "clock_offset_ms": -40, "camera_failsafe": False,
    }  # fmt: skip
    async with collector(broker, store), api(store, clock) as http:
        assert await publish_acked(broker.port, "taxi-h", health_batch("taxi-h", 1, now, bad), 1)
        assert await kinds(http, "taxi-h") == {"backlog_age", "clock_offset", "camera_failsafe"}
        v = (await http.get("/v1/vehicles/taxi-h")).json()
        assert (v["backlog_batches"], v["backlog_age_s"]) == (400, 2700.0)
        assert v["data_today_bytes"] > 0
        text = (await http.get("/metrics")).text
        assert metric(text, "collector_alerts_active", kind="backlog_age") == 1
        assert metric(text, "vehicle_backlog_age_seconds", vehicle="taxi-h") == 2700
        # The backlog drains, the clock is fixed, the camera recovers: alerts clear.
        later = health_batch("taxi-h", 2, now + 5000, good)
        assert await publish_acked(broker.port, "taxi-h", later, 2) == 2
        assert await kinds(http, "taxi-h") == set()
        # An old snapshot re-sent from the backlog does not bring them back.
        resent = health_batch("taxi-h", 3, now - 5000, bad)
        assert await publish_acked(broker.port, "taxi-h", resent, 3) == 3
        assert await kinds(http, "taxi-h") == set()
        series = (await http.get("/v1/vehicles/taxi-h/health")).json()
        assert [p["values"]["outbox_pending_batches"] for p in series] == [400, 400, 1]
        text = (await http.get("/metrics")).text
        assert metric(text, "collector_alerts_active", kind="backlog_age") == 0


async def test_offline_alert_after_will_and_time(broker: MosquittoHarness, store: Store) -> None:
    clock = Clock()
    status_topic = f"fleet/{FLEET}/taxi-w/status"
    offline = encode_status(Status(state=Presence.OFFLINE, time_ms=clock()))
    async with collector(broker, store) as run, api(store, clock) as http:
        agent = aiomqtt.Client(
            "127.0.0.1", broker.port, identifier="taxi-w", protocol=aiomqtt.ProtocolVersion.V5,
            will=aiomqtt.Will(status_topic, offline, qos=1, retain=True), keepalive=5,
        )  # fmt: skip
        await agent.__aenter__()
        online = encode_status(Status(state=Presence.ONLINE, time_ms=clock()))
        await agent.publish(status_topic, online, qos=1, retain=True)

        async def presence(state: bool) -> bool:
            v = await store.vehicle("taxi-w")
            return v is not None and v.online is state

        await run.wait_for(lambda: presence(True))
        # The link dies without a DISCONNECT: the broker publishes the will.
        sock = agent._client.socket()  # paho's socket, to cut it
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        await run.wait_for(lambda: presence(False))
        with contextlib.suppress(aiomqtt.MqttError):
            await agent.__aexit__(None, None, None)
        assert await kinds(http, "taxi-w") == set()  # just went offline
        clock.offset_ms = 9 * MIN
        assert await kinds(http, "taxi-w") == set()
        clock.offset_ms = 11 * MIN
        [alert] = (await http.get("/v1/alerts", params={"kind": "offline"})).json()
        assert (alert["vehicle"], alert["severity"]) == ("taxi-w", "critical")
        assert (await http.get("/v1/vehicles/taxi-w")).json()["status"] == "offline"
        # Back online: the alert clears.
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as again:
            # Stamped by the agent's (real) clock: only the API's clock was moved on.
            back = encode_status(Status(state=Presence.ONLINE, time_ms=time.time_ns() // MS))
            await again.publish(status_topic, back, qos=1, retain=True)
        await run.wait_for(lambda: presence(True))
        assert await kinds(http, "taxi-w") == set()


async def _unknown_version_acked(broker: MosquittoHarness, store: Store) -> None:
    async with collector(broker, store) as run:
        seq = await publish_acked(broker.port, "taxi-u", unknown_version("taxi-u", 31, 1), 1)
        assert seq == 1
        # Later batches of the epoch are acknowledged past it.
        assert await publish_acked(broker.port, "taxi-u", payload("taxi-u", 31, 2), 2) == 2
        # Redelivered: acknowledged again, stored once.
        assert await publish_acked(broker.port, "taxi-u", unknown_version("taxi-u", 31, 1), 1)
        assert run.metrics.quarantined["unknown_version"] == 2
    figures = await store.metrics()
    assert figures["quarantine_total:unknown_version"] == 1
    v = await store.vehicle("taxi-u")
    assert v is not None
    assert (v.quarantined, v.duplicates, v.batches_total) == (1, 1, 1)


async def test_unknown_version_quarantined_and_acked_sqlite(
    broker: MosquittoHarness, store: Store
) -> None:
    await _unknown_version_acked(broker, store)


async def test_unknown_version_quarantined_and_acked_postgres(
    broker: MosquittoHarness,
    pg_server: PgHarness,
) -> None:
    store = await open_store(pg_server.create_database(f"hq{next(_db_names)}"))
    try:
        await _unknown_version_acked(broker, store)
    finally:
        await store.close()
