"""The query side on connections of its own, on SQLite and PostgreSQL: it cannot write, a
query running past ``query_timeout_s`` is cancelled with ``QueryTimeoutError`` (a 503
with Retry-After at the API), and ingest commits while a long query runs."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloud_collector.api import create_app
from cloud_collector.errors import QueryTimeoutError, StoreError
from cloud_collector.store import EventQuery, Store, open_store
from cloud_collector.store.shared import Runner, SplitStore
from cloud_collector.store.sqlite import SqliteRunner
from harness.collector import make_batch
from harness.postgres import PgHarness
from tests.support.api_client import api_client

_names = itertools.count()
TIMEOUT_S = 0.5
# Long on either engine (seconds), and interruptible.
SLOW = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
    " WHERE x < 500000000) SELECT COUNT(*) FROM c",
    "postgres": "SELECT pg_sleep(30)",
}


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, Store]]:
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path / 'q.db'}"
    else:
        pg: PgHarness = request.getfixturevalue("pg_server")
        url = pg.create_database(f"qside{next(_names)}")
    s = await open_store(url, query_timeout_s=TIMEOUT_S)
    yield request.param, s
    await s.close()


def _reader(store: Store) -> Runner:
    assert isinstance(store, SplitStore)
    assert store.query_runner is not None
    return store.query_runner


async def test_the_query_side_cannot_write(engine: tuple[str, Store]) -> None:
    _, store = engine
    with pytest.raises(StoreError):
        await _reader(store).run(lambda tx: tx.execute("DELETE FROM events"))
    reader = _reader(store)
    if isinstance(reader, SqliteRunner):  # a replaced connection is read-only too
        await reader._db.close()
        with pytest.raises(StoreError):
            await store.events(EventQuery(limit=1))
        assert (await store.events(EventQuery(limit=1))).events == []
        assert reader.reconnects == 1
        with pytest.raises(StoreError, match="readonly"):
            await reader.run(lambda tx: tx.execute("DELETE FROM events"))


async def test_a_long_query_is_cancelled_and_ingest_goes_on(engine: tuple[str, Store]) -> None:
    name, store = engine
    slow = SLOW[name]
    started = time.monotonic()
    query = asyncio.create_task(_reader(store).run(lambda tx: tx.fetch(slow)))
    await asyncio.sleep(0.05)
    # Ingest commits on its own connection while the query runs.
    r = await store.ingest(make_batch("taxi-q", 1, 1), topic_channel="batch",
                           payload_bytes=100, received_ms=1)  # fmt: skip
    assert r.new
    with pytest.raises(QueryTimeoutError):
        await query
    assert time.monotonic() - started < 15  # cancelled, not run to its end
    # The query side works again afterwards.
    assert [e.vehicle for e in (await store.events(EventQuery(limit=100))).events] == ["taxi-q"] * 2
    await store.ping()


async def test_a_timed_out_query_is_a_503_with_retry_after(engine: tuple[str, Store]) -> None:
    name, store = engine
    app = create_app(store)

    @app.get("/slow-for-test")
    async def slow() -> None:
        await _reader(store).run(lambda tx: tx.fetch(SLOW[name]))

    async with api_client(app) as c:
        r = await c.get("/slow-for-test")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    assert "query timeout" in r.json()["detail"]
