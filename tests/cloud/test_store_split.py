"""The store's two sides on real databases: the query side only reads, the ledger alone
writes receipts and acks, and the query side can run on a connection of its own while
ingest and the API go on as before."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cloud_collector.api import create_app
from cloud_collector.store import EventQuery, RoadQuery, Store, open_store
from cloud_collector.store.base import COLLECTION_IDS, FeatureQuery, HealthQuery
from cloud_collector.store.engine import Row, Tx
from cloud_collector.store.ledger import EngineLedger
from cloud_collector.store.progress import TxStats
from cloud_collector.store.queries import EngineQueries
from cloud_collector.store.shared import Runner, SplitStore
from cloud_collector.store.sqlite import SqliteStore
from protocol import eviction_notice
from protocol.batch import Batch
from protocol.records import Event, FrameRef, GnssFix, Health, SignalSeries
from tests.support.auth import api_client

T = TypeVar("T")
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000  # an hour start
LAT, LON = 37.5665, 126.9780
EPOCH = 2**64 - 5
WRITES = ("INSERT", "UPDATE", "DELETE", "UPSERT", "REPLACE", "CREATE", "DROP", "ALTER")


def fix(t: int) -> GnssFix:
    return GnssFix(time_ms=t, lat=LAT, lon=LON, mode=3, speed_mps=10.0)


def event(kind: str, t: int, **attrs: int) -> Event:
    return Event(kind, t, 36.0, fix(t), FrameRef("cam", 0x700), dict(attrs))


def batch(seq: int, **records: Any) -> Batch:
    if not records:
        records = {"events": [event("fcw", T0 + seq * 1000)]}
    return Batch.build(
        fleet_id="seoul", vehicle_id="taxi-1", epoch=EPOCH, seq=seq, sent_ms=T0, **records
    )


class _RecordingTx:
    """A backend's open transaction that notes every statement run through it."""

    def __init__(self, tx: Tx, statements: list[str]) -> None:
        self._tx = tx
        self._statements = statements
        self.lock_suffix = tx.lock_suffix
        self.least = tx.least
        self.greatest = tx.greatest
        self.merge_counts = tx.merge_counts
        self.count_of = tx.count_of
        self.json_entries = tx.json_entries
        self.entry_number = tx.entry_number
        self.events_by_time_pos = tx.events_by_time_pos
        self.events_by_cell_time = tx.events_by_cell_time
        self.json_object_agg = tx.json_object_agg

    async def execute(self, sql: str, *args: object) -> None:
        self._statements.append(sql)
        await self._tx.execute(sql, *args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._statements.append(sql)
        await self._tx.executemany(sql, rows)

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        self._statements.append(sql)
        return await self._tx.fetch(sql, *args)

    async def fetch_columns(self, sql: str, width: int, *args: object) -> list[Sequence[Any]]:
        self._statements.append(sql)
        return await self._tx.fetch_columns(sql, width, *args)

    async def lock_signs(self) -> None:
        self._statements.append("LOCK signs")
        await self._tx.lock_signs()

    def merge_json(self, old: str, new: str) -> str:
        return self._tx.merge_json(old, new)

    async def lock_day_sums(self, exclusive: bool) -> None:
        self._statements.append("LOCK day sums")
        await self._tx.lock_day_sums(exclusive)


class _Recording:
    """A ``Runner`` over another one, recording the statements of its transactions."""

    def __init__(self, inner: Runner) -> None:
        self._inner = inner
        self.tx_stats: TxStats = inner.tx_stats
        self.statements: list[str] = []

    async def run(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        return await self._inner.run(lambda tx: work(_RecordingTx(tx, self.statements)))

    async def close(self) -> None:
        await self._inner.close()


def _runner(store: Store) -> Runner:
    assert isinstance(store, SplitStore)
    runner: Runner = store.runner
    return runner


def _first_word(sql: str) -> str:
    return sql.split(None, 1)[0].upper()


async def _every_query(store: Store) -> list[object]:
    """Every method of the query side, with filters that reach every read."""
    box = (126.0, 37.0, 128.0, 38.0)
    return [
        await store.events(EventQuery(limit=2)),
        await store.events(EventQuery(type="fcw", vehicle="taxi-1", bbox=box, since_ms=T0)),
        await store.road_conditions(RoadQuery(bbox=box, since_ms=T0, min_exposure=0)),
        await store.road_conditions(RoadQuery(type="fcw", min_exposure=0)),
        await store.signs(box),
        await store.vehicles(),
        await store.vehicle("taxi-1"),
        await store.vehicle_health(),
        await store.vehicle_health("taxi-1"),
        await store.health_history(HealthQuery(vehicle="taxi-1")),
        await store.metrics(),
        await store.cell_page(FeatureQuery(bbox=box, since_ms=T0, limit=1, after=(0, 0))),
        await store.sign_page(FeatureQuery(until_ms=T0 + 3_600_000, after=(0, 0))),
        *[await store.count_features(c, FeatureQuery(bbox=box), 10) for c in COLLECTION_IDS],
        await store.extents(),
    ]


async def _fill(store: Store) -> None:
    """Batches that take every ledger path: records of each kind, a sign, a gap closed
    by an eviction notice, a duplicate, a quarantined identity, presence, clock ahead."""
    rich = batch(
        1,
        events=[event("fcw", T0 + 1000), event("tsr_sign", T0 + 1001, sign_type=3)],
        signals=[SignalSeries("vehicle_speed", (T0, T0 + 500), (30.0, 31.0), "km/h")],
        gnss=[fix(T0 + 200), fix(T0 + 900)],
        health=[Health(T0 + 1000, {"outbox_pending_batches": 2})],
    )
    notice = eviction_notice(
        epoch=EPOCH, first_seq=2, last_seq=2, time_ms=T0 + 2000, records=1, cause="test"
    )
    for b in (rich, batch(3, events=[notice]), rich):
        await store.ingest(b, topic_channel="batch", payload_bytes=100, received_ms=T0 + 5000)
    await store.set_presence(fleet="seoul", vehicle="taxi-1", online=True, time_ms=T0)
    await store.note_clock_ahead(fleet="seoul", vehicle="taxi-1", ahead_ms=9000, received_ms=T0)
    await store.quarantine(
        topic="fleet/seoul/taxi-2/batch", payload=b"junk", reason="bad_msgpack",
        received_ms=T0, fleet="seoul", vehicle="taxi-2",
    )  # fmt: skip


@pytest.fixture
def store(store_on_each_backend: Store) -> Store:
    return store_on_each_backend


async def test_the_query_side_only_reads_and_the_ledger_alone_writes(store: Store) -> None:
    assert isinstance(store, SplitStore)
    recorded_ledger = _Recording(_runner(store))
    ledger = EngineLedger(recorded_ledger, gap_grace_ms=None)
    recorded_queries = _Recording(_runner(store))
    queries = EngineQueries(recorded_queries)
    split = SplitStore(recorded_ledger, ledger, queries)

    await _fill(split)
    assert (await store.vehicle("taxi-1")) is not None
    answers = await _every_query(split)

    assert answers == await _every_query(store)  # the same answers as the opened store
    assert recorded_queries.statements
    assert {_first_word(sql) for sql in recorded_queries.statements} == {"SELECT"}
    written = " ".join(s for s in recorded_ledger.statements if _first_word(s) in WRITES)
    tables = ("receipts", "epoch_acks", "quarantine", "vehicle_status", "events", "road_cells_day")
    for table in tables:
        assert f" {table} " in written, table
    await split.ping()  # the ingest just committed proves the store
    await split.ping()  # nothing committed since: a round trip on the ledger's side
    assert recorded_ledger.statements[-1] == "SELECT 1"
    await split.queries.ping()  # each side on its own runner
    assert recorded_queries.statements[-1] == "SELECT 1"


@pytest.fixture
async def two_connections(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    url = f"sqlite://{tmp_path / 'store.db'}"
    a, b = await open_store(url), await open_store(url)
    assert isinstance(a, SqliteStore)
    assert isinstance(b, SqliteStore)
    try:
        yield a, b
    finally:
        await b.close()
        await a.close()


async def test_the_query_side_on_its_own_connection_serves_the_api(
    two_connections: tuple[SqliteStore, SqliteStore],
) -> None:
    """Another query engine is another ``queries``: here a second SQLite connection (a
    WAL reader) under the API, while ingest writes through the first one's ledger."""
    writer, reader = two_connections
    split = SplitStore(writer.runner, writer.ledger, reader.queries)
    r = await split.ingest(batch(1), topic_channel="batch", payload_bytes=100, received_ms=T0)
    assert (r.new, r.contiguous_seq) == (True, 1)
    assert writer.runner.tx_stats.committed > 0
    assert reader.query_runner is not None  # the query side's own connection
    read_before = reader.query_runner.tx_stats.committed

    app = create_app(split.queries, clock_ms=lambda: T0 + 1000, access=reader.access)
    async with api_client(app, writer.access) as client:
        events = (await client.get("/v1/events")).json()
        vehicles = (await client.get("/v1/vehicles")).json()
        ready = await client.get("/readyz")

    assert [f["properties"]["type"] for f in events["features"]] == ["fcw"]
    assert [v["vehicle"] for v in vehicles["vehicles"]] == ["taxi-1"]
    assert ready.status_code == 200, ready.text
    assert reader.query_runner.tx_stats.committed >= read_before + 3  # the API read through it
    # The ledger is the writer's alone: a duplicate is recognised by its receipt.
    again = await split.ingest(batch(1), topic_channel="batch", payload_bytes=100, received_ms=T0)
    assert (again.new, again.contiguous_seq) == (False, 1)
