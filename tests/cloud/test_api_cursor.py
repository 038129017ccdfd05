"""Every malformed ``cursor`` of /v1/events is a 400 naming the parameter, on SQLite and on
PostgreSQL (an oversized number used to reach the driver: a 500 and a 503)."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cloud_collector.api import create_app
from cloud_collector.store import open_store
from harness.collector import make_batch
from harness.postgres import PgHarness
from tests.support.api_client import api_client

_names = itertools.count()


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


BAD_CURSORS = [
    _b64(f"{2**63}.1"),
    _b64(f"1.{2**64}"),
    _b64("9" * 400 + ".1"),
    _b64("-1.5"),
    _b64("1_000.5"),
    _b64(" 1.5"),
    _b64("1.2.3"),
    _b64("\u00e9.1"),
    "\u00e9\u00e9\u00e9\u00e9",
    "%%%%",
    "Zm9v",
]


@pytest.fixture(params=["sqlite", "postgres"])
async def client(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path / 'c.db'}"
    else:
        pg: PgHarness = request.getfixturevalue("pg_server")
        url = pg.create_database(f"cursor{next(_names)}")
    store = await open_store(url)
    batch = make_batch("taxi-a", 1, 1, events=3)
    await store.ingest(batch, topic_channel="batch", payload_bytes=100, received_ms=1)
    async with api_client(create_app(store)) as c:
        yield c
    await store.close()


async def test_malformed_cursors_are_400(client: httpx.AsyncClient) -> None:
    for cursor in BAD_CURSORS:
        r = await client.get("/v1/events", params={"cursor": cursor})
        assert r.status_code == 400, (cursor, r.status_code, r.text)
        assert r.json()["detail"].startswith("cursor:"), r.text


async def test_a_real_cursor_still_pages(client: httpx.AsyncClient) -> None:
    first = (await client.get("/v1/events", params={"limit": "1"})).json()
    assert first["next_cursor"]
    r = await client.get("/v1/events", params={"limit": "1", "cursor": first["next_cursor"]})
    assert r.status_code == 200
    assert r.json()["features"][0] != first["features"][0]
