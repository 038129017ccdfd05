"""A store transaction that fails or is cancelled at any point leaves the store usable.

SQLite: aiosqlite runs every statement in its own thread, and a task cancelled while it
awaits one does not stop the statement, which still runs there: a cancelled ``BEGIN``
still opens a transaction, a cancelled ``COMMIT`` still commits. The cancellation points
are injected at aiosqlite's one dispatch method, on the real library and a real file:
the calling task is cancelled right after the operation was queued to the thread, which
is exactly where a TaskGroup's cancellation lands in production.

PostgreSQL: a transaction cancelled mid-statement, or whose server backend dies under it,
must not leave the pool with a wedged connection.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from cloud_collector.errors import QueryError, StoreError
from cloud_collector.store import EventQuery, Store, open_store
from cloud_collector.store.postgres import PostgresStore
from cloud_collector.store.progress import TxStats, WatchProgress
from cloud_collector.store.sqlite import SqliteRunner, SqliteStore
from harness.postgres import PgHarness
from protocol.batch import Batch
from tests.support.store_records import GRACE_MS, T0, batch, event

_db_names = itertools.count()


class CancelAt:
    """Cancels the calling task at chosen operations (1-based) of one aiosqlite connection.

    The operation is queued to aiosqlite's thread first, so it still runs there."""

    def __init__(self, db: Any) -> None:
        self._dispatch: Callable[..., Awaitable[Any]] = db._execute
        self.calls = 0
        self.cancel_at: set[int] = set()
        db._execute = self._hook

    async def _hook(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls in self.cancel_at:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        return await self._dispatch(fn, *args, **kwargs)

    def arm(self, *points: int) -> None:
        self.calls = 0
        self.cancel_at = set(points)


def _rich(seq: int) -> Batch:
    """A batch that takes every ingest path (records, aggregates, a sign cluster)."""
    return batch(
        seq,
        events=[event("fcw", T0 + seq * 1000), event("tsr_sign", T0 + seq * 1000 + 1, sign_type=3)],
    )


async def _ingest(store: Store, b: Batch) -> bool:
    r = await store.ingest(b, topic_channel="batch", payload_bytes=100, received_ms=T0 + 10**6)
    return r.new


async def _open_sqlite(tmp_path: Path) -> tuple[SqliteStore, CancelAt]:
    store = await open_store(f"sqlite://{tmp_path / 'store.db'}", gap_grace_ms=GRACE_MS)
    assert isinstance(store, SqliteStore)
    return store, CancelAt(store.runner._db)


async def test_sqlite_cancelled_at_every_await_point_then_next_call_works(tmp_path: Path) -> None:
    store, hook = await _open_sqlite(tmp_path)
    try:
        hook.arm()
        assert await _ingest(store, _rich(1))
        points = hook.calls  # the operations of one ingest, BEGIN to COMMIT
        assert points >= 10
        seq = 1
        # Each point alone, then each point and the next one (the cleanup of the first
        # cancellation is itself cancelled).
        plans = [(k,) for k in range(1, points + 1)] + [(k, k + 1) for k in range(1, points)]
        for plan in plans:
            seq += 1
            hook.arm(*plan)
            task = asyncio.create_task(_ingest(store, _rich(seq)))
            with pytest.raises(asyncio.CancelledError):
                await task
            hook.arm()
            # The next calls work; the cancelled batch is stored once, by the cancelled
            # call (its COMMIT had been queued) or by this redelivery.
            await store.ping()
            await _ingest(store, _rich(seq))
            assert await _ingest(store, _rich(seq)) is False, plan
        status = await store.vehicle("taxi-1")
        assert status is not None
        assert status.batches_total == seq
        assert len((await store.events(EventQuery(limit=10_000))).events) == 2 * seq
    finally:
        await store.close()


async def test_sqlite_cancelled_read_then_write_works(tmp_path: Path) -> None:
    store, _ = await _open_sqlite(tmp_path)
    # Reads run on the query side's own connection.
    assert isinstance(store.query_runner, SqliteRunner)
    hook = CancelAt(store.query_runner._db)
    try:
        for k in (1, 2, 3):
            hook.arm(k)
            task = asyncio.create_task(store.vehicles())
            with pytest.raises(asyncio.CancelledError):
                await task
            hook.arm()
            assert await _ingest(store, _rich(k))
            assert len(await store.vehicles()) == 1
    finally:
        await store.close()


async def test_sqlite_connection_lost_inside_a_transaction_is_replaced(tmp_path: Path) -> None:
    store, hook = await _open_sqlite(tmp_path)
    try:
        assert await _ingest(store, _rich(1))
        hook.arm(1)
        task = asyncio.create_task(_ingest(store, _rich(2)))
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.runner._db.close()  # the connection is gone with its transaction open
        assert await _ingest(store, _rich(2))
        assert store.runner.reconnects == 1
        assert [e.seq for e in (await store.events(EventQuery())).events] == [1, 1, 2, 2]
    finally:
        await store.close()


# -- PostgreSQL ------------------------------------------------------------------------


async def _blocked_ingest(
    store: PostgresStore, admin: asyncpg.Connection[asyncpg.Record], seq: int
) -> tuple[asyncio.Task[bool], int]:
    """An ingest of taxi-1 stuck mid-transaction on a row lock that ``admin`` holds (the
    caller opened a transaction on ``admin``); returns the task and its backend pid."""
    await admin.execute("SELECT 1 FROM vehicle_status WHERE vehicle = 'taxi-1' FOR UPDATE")
    task = asyncio.create_task(_ingest(store, _rich(seq)))
    for _ in range(200):
        pid = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        if pid is not None:
            return task, int(pid)
        await asyncio.sleep(0.02)
    raise AssertionError("the ingest never waited for the lock")


@pytest.mark.integration
async def test_postgres_cancelled_or_killed_mid_transaction_does_not_wedge_the_pool(
    pg_server: PgHarness,
) -> None:
    url = pg_server.create_database(f"recovery{next(_db_names)}")
    store = await open_store(url, gap_grace_ms=GRACE_MS)
    assert isinstance(store, PostgresStore)
    admin = await asyncpg.connect(url)
    try:
        assert await _ingest(store, _rich(1))
        seq = 1
        # More rounds than the pool has connections: a leaked one would show.
        for round_ in range(12):
            seq += 1
            async with admin.transaction():
                task, pid = await _blocked_ingest(store, admin, seq)
                if round_ % 2 == 0:
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                else:
                    await admin.execute("SELECT pg_terminate_backend($1)", pid)
                    with pytest.raises(StoreError):
                        await task
            # The pool serves the next calls at once, several of them concurrently.
            await asyncio.wait_for(store.ping(), 5)
            assert await asyncio.wait_for(_ingest(store, _rich(seq)), 5)
            await asyncio.wait_for(asyncio.gather(*(store.vehicles() for _ in range(12))), 10)
        status = await store.vehicle("taxi-1")
        assert status is not None
        assert status.batches_total == seq
    finally:
        await admin.close()
        await store.close()


# -- the watchdog's progress value -----------------------------------------------------


def test_watch_progress_stands_still_while_a_transaction_hangs_or_the_store_fails() -> None:
    stats, watch = TxStats(), WatchProgress()
    idle = [watch.progress(stats) for _ in range(3)]
    assert idle[0] < idle[1] < idle[2]  # idle and healthy: the heartbeat advances
    stats.pending = 1
    assert watch.progress(stats) == watch.progress(stats) == idle[2]
    stats.pending = 0
    stats.failed_one()
    assert watch.progress(stats) == watch.progress(stats) == idle[2]
    stats.committed_one()
    assert watch.progress(stats) > idle[2]


async def test_counted_marks_store_failures_only(tmp_path: Path) -> None:
    store, _ = await _open_sqlite(tmp_path)
    try:
        with pytest.raises(QueryError):
            await store.events(EventQuery(cursor="not a cursor!"))
        assert (store.tx_stats.failures, store.tx_stats.failing) == (0, False)
        await store.runner._db.close()  # the connection is lost between transactions
        with pytest.raises(StoreError):
            await store.ping()
        assert store.tx_stats.failing
        assert store.tx_stats.pending == 0
        await store.ping()  # on a new connection
        assert store.runner.reconnects == 1
        assert not store.tx_stats.failing
    finally:
        await store.close()
