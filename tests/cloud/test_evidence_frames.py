"""Evidence frames (protocol schema 2): stored linked to their event on SQLite and
PostgreSQL, and served as a candump -L log by ``/v1/events/{id}/frames``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import can
import httpx
import pytest

from cloud_collector.api import create_app
from cloud_collector.metrics import IngestMetrics
from cloud_collector.store import EventQuery, Store, open_store
from protocol import decode_batch, encode_batch
from protocol.records import RawFrame
from tests.support.auth import api_client
from tests.support.store_records import T0, batch, event

EVENT_MS = T0 + 7_000
DATA = bytes.fromhex("0011223344556677")


def evidence(event_ms: int = EVENT_MS, bus: str = "cam") -> list[RawFrame]:
    return [
        RawFrame(bus, (event_ms - 40) * 1000 + 123, 0x700, DATA, event_ms=event_ms),
        RawFrame(bus, event_ms * 1000, 0x738, bytes.fromhex("A1B2C3"), event_ms=event_ms),
        RawFrame(bus, event_ms * 1000 + 900, 0x18FF50E5, b"", extended=True, event_ms=event_ms),
    ]  # fmt: skip


@pytest.fixture
def store(store_on_each_backend: Store) -> Store:
    return store_on_each_backend


async def _ingest(store: Store, seq: int, **records: Any) -> None:
    b = decode_batch(encode_batch(batch(seq, **records)))  # as received: through the wire
    await store.ingest(b, topic_channel="batch", payload_bytes=100, received_ms=T0 + 60_000)


async def _event_id(store: Store, kind: str) -> int:
    page = await store.events(EventQuery(type=kind, limit=10))
    (found,) = page.events
    return found.id


async def test_frames_are_stored_linked_to_their_event_whichever_comes_first(
    store: Store,
) -> None:
    # The frames (bulk) arrive before their event (urgent), with another event's frames.
    await _ingest(store, 2, frames=[*evidence(), *evidence(EVENT_MS + 1)])
    await _ingest(store, 1, events=[event("fcw", EVENT_MS), event("pcw", EVENT_MS + 1)])
    found = await store.event_evidence(await _event_id(store, "fcw"))
    assert found is not None
    assert found.event.type == "fcw"
    assert [(f.time_us, f.bus, f.can_id, f.extended, f.data) for f in found.frames] == [
        (f.time_us, f.bus, f.can_id, f.extended, f.data) for f in evidence()
    ]
    assert await store.event_evidence(10**9) is None


async def test_a_version_1_batch_is_still_stored_and_its_unlinked_frames_are_not(
    store: Store,
) -> None:
    frames = [RawFrame("cam", EVENT_MS * 1000, 0x700, bytes(8))]
    v1 = batch(1, events=[event("fcw", EVENT_MS)], frames=frames)
    assert v1.header.schema_version == 1
    await _ingest(store, 1, events=[event("fcw", EVENT_MS)], frames=frames)
    found = await store.event_evidence(await _event_id(store, "fcw"))
    assert found is not None
    assert found.frames == []


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    store = await open_store(f"sqlite:///{tmp_path / 'api.sqlite3'}")
    app = create_app(store, IngestMetrics(), mqtt_ready=lambda: True)
    async with api_client(app, store.access) as c:
        yield c, store
    await store.close()


async def test_the_frames_route_serves_a_candump_log_python_can_reads(
    client: tuple[httpx.AsyncClient, Store], tmp_path: Path
) -> None:
    http, store = client
    await _ingest(store, 1, events=[event("fcw", EVENT_MS), event("speed_sign", EVENT_MS + 5)])
    await _ingest(store, 2, frames=evidence())
    response = await http.get(f"/v1/events/{await _event_id(store, 'fcw')}/frames")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    seconds, micros = divmod((EVENT_MS - 40) * 1000 + 123, 1_000_000)
    assert response.text.splitlines()[0] == f"({seconds}.{micros:06d}) cam 700#0011223344556677"
    log = tmp_path / "evidence.log"
    log.write_text(response.text)
    read = [
        (m.timestamp, m.channel, m.arbitration_id, m.is_extended_id, bytes(m.data))
        for m in can.LogReader(str(log))
    ]
    assert read == [
        (f.time_us / 1e6, f.bus, f.can_id, f.extended, f.data) for f in evidence()
    ]  # fmt: skip
    no_frames = await http.get(f"/v1/events/{await _event_id(store, 'speed_sign')}/frames")
    assert no_frames.status_code == 404
    assert "no raw frames" in no_frames.json()["detail"]
    assert (await http.get("/v1/events/999999/frames")).status_code == 404
    assert (await http.get("/v1/events/zero/frames")).status_code == 400
