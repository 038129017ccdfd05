"""The PostgreSQL backend: an asyncpg pool, one transaction per method of either side.

Concurrency: several ingest tasks may run at once. Per-vehicle work is serialised by the
``vehicle_state`` and ``epoch_acks`` row locks (``FOR UPDATE``); shared aggregate rows are
upserted in key order (see ``engine``); sign clustering takes a transaction-scoped advisory
lock, because "find the nearest cluster, else create one" must not race with itself.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar, cast

import asyncpg

from cloud_collector.errors import (
    MigrationError,
    QueryTimeoutError,
    StoreError,
    StoreUnavailableError,
)
from cloud_collector.store import migrations as mig
from cloud_collector.store.engine import Row, Tx
from cloud_collector.store.ledger import EngineLedger
from cloud_collector.store.progress import TxStats, counted
from cloud_collector.store.queries import EngineQueries
from cloud_collector.store.shared import SplitStore

T = TypeVar("T")
# Arbitrary constants naming the advisory locks of this application.
SIGN_LOCK_KEY: Final = 0x5349474E  # "SIGN"
MIGRATION_LOCK_KEY: Final = 0x4D494752  # "MIGR"
DAY_SUMS_LOCK_KEY: Final = 0x44415953  # "DAYS"
# Retries of a transaction PostgreSQL aborted to resolve a deadlock or serialisation
# conflict; the transaction had no effect, so running it again is safe.
RETRIES: Final = 3
_PLACEHOLDER = re.compile(r"\?")
# Per-session planner settings of the store's connections:
# * no JIT: the store's queries are short, and compiling costs more than it saves (a
#   city-wide road query spent ~5 ms compiling);
# * random_page_cost for SSD or cached data instead of the spinning-disk default of 4,
#   under which the planner sorts a day of cell-hours (10^5 rows, ~3x slower) instead of
#   reading them in order from the (hour_ms, cell) index over a heap in the same order.
SESSION_SETTINGS: Final = {"jit": "off", "random_page_cost": "1.1"}
# Connections of the query side's own pool: a few, so that an API load leaves the
# server's CPU and connections to ingest (the HTTP side bounds concurrency further).
QUERY_POOL_SIZE: Final = 4


def numbered(sql: str) -> str:
    """``?`` placeholders to ``$1, $2, ...`` (our SQL has no literal question marks)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


def columns_sql(sql: str, width: int) -> str:
    """``sql`` (``?`` placeholders, ``width`` columns) as one row: the row count, then
    one array per column."""
    names = ", ".join(f"c{i}" for i in range(width))
    aggregates = ", ".join(f"array_agg(c{i})" for i in range(width))
    return numbered(f"SELECT COUNT(*), {aggregates} FROM ({sql}) AS s ({names})")


def _merged(old: str, new: str) -> str:
    """The JSON object of counts ``old`` plus ``new``, key by key (``new`` not empty)."""
    return (
        f"{old} || (SELECT jsonb_object_agg(key, value::bigint"
        f" + COALESCE(({old} ->> key)::bigint, 0)) FROM jsonb_each_text({new}))"
    )


class _PgTx:
    lock_suffix = " FOR UPDATE"
    least = "LEAST"
    greatest = "GREATEST"
    merge_counts = _merged("road_cells.counts", "excluded.counts")
    count_of = "(counts ->> ?::text)::bigint"
    json_entries = "jsonb_each"
    entry_number = "CASE WHEN jsonb_typeof(j.value) = 'number' THEN (j.value #>> '{}')::float8 END"
    events_by_time_pos = "events"
    events_by_cell_time = "events"
    json_object_agg = "jsonb_object_agg"

    def __init__(self, con: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> None:
        self._con = con

    async def execute(self, sql: str, *args: object) -> None:
        await self._con.execute(numbered(sql), *args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        await self._con.executemany(numbered(sql), rows)

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        # asyncpg's Record indexes like a tuple but is not typed as a Sequence.
        return cast("list[Row]", await self._con.fetch(numbered(sql), *args))

    async def fetch_columns(self, sql: str, width: int, *args: object) -> list[Sequence[Any]]:
        """One row of ``width`` arrays, decoded by asyncpg straight into lists. An
        aggregate over an ordered subquery sees the rows in that order (as the
        PostgreSQL manual describes for ``array_agg``)."""
        row = await self._con.fetchrow(columns_sql(sql, width), *args)
        assert row is not None
        if not row[0]:
            return [[] for _ in range(width)]
        return [row[i + 1] for i in range(width)]

    async def lock_signs(self) -> None:
        await self._con.execute("SELECT pg_advisory_xact_lock($1)", SIGN_LOCK_KEY)

    def merge_json(self, old: str, new: str) -> str:
        return _merged(old, new)

    async def lock_day_sums(self, exclusive: bool) -> None:
        kind = "" if exclusive else "_shared"
        await self._con.execute(f"SELECT pg_advisory_xact_lock{kind}($1)", DAY_SUMS_LOCK_KEY)


class PgRunner:
    """Transactions on a pool (``shared.Runner``): the ledger's pool, and the query
    side's own small pool (``open_postgres``), so queries never take the connections
    ingest needs, and every query has a ``statement_timeout``."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self._pool = pool
        self.tx_stats = TxStats()

    async def run(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        return await counted(self.tx_stats, self._transact(work))

    async def _transact(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        for attempt in range(RETRIES + 1):
            try:
                async with self._pool.acquire() as con, con.transaction():
                    return await work(_PgTx(con))
            except (
                asyncpg.DeadlockDetectedError,
                asyncpg.SerializationError,
            ):
                if attempt == RETRIES:
                    raise
            except (
                OSError,
                asyncpg.CannotConnectNowError,
                asyncpg.ConnectionDoesNotExistError,
                asyncpg.AdminShutdownError,
                # A backend that died mid-transaction: closing the transaction finds the
                # connection closed. The pool replaces it on release.
                asyncpg.InterfaceError,
            ) as exc:
                raise StoreUnavailableError(f"postgresql unavailable: {exc}") from exc
            except asyncpg.QueryCanceledError as exc:
                # statement_timeout of the query side's pool (nobody else cancels).
                raise QueryTimeoutError(f"postgresql: query cancelled: {exc}") from exc
            except asyncpg.PostgresError as exc:
                raise StoreError(f"postgresql: {exc}") from exc
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self._pool.close()


class PostgresStore(SplitStore[PgRunner]):
    """``base.Store`` on PostgreSQL; create with ``open_postgres``."""


async def _migrate(pool: asyncpg.Pool[asyncpg.Record]) -> None:
    async with pool.acquire() as con, con.transaction():
        # Several collectors may start at once: one migrates, the others wait and find
        # nothing left to do.
        await con.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await con.execute(mig.CREATE_TABLE)
        applied = {int(r[0]) for r in await con.fetch("SELECT version FROM schema_migrations")}
        for m in mig.pending(mig.load("postgres"), applied):
            try:
                async with con.transaction():
                    await con.execute(m.sql)
                    await con.execute(
                        "INSERT INTO schema_migrations (version, name, applied_ms)"
                        " VALUES ($1, $2, $3)",
                        m.version, m.name, int(time.time() * 1000),
                    )  # fmt: skip
            except asyncpg.PostgresError as exc:
                raise MigrationError(
                    f"postgres migration {m.version}_{m.name} failed: {exc}"
                ) from exc


async def _pool(url: str, max_size: int, settings: dict[str, str]) -> asyncpg.Pool[asyncpg.Record]:
    try:
        return await asyncpg.create_pool(
            url, min_size=1, max_size=max_size, server_settings=settings
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreUnavailableError(f"postgresql: cannot connect: {exc}") from exc


async def open_postgres(
    url: str,
    *,
    gap_grace_ms: int | None,
    max_size: int = 10,
    query_timeout_s: float | None = None,
    query_pool_size: int = QUERY_POOL_SIZE,
    contributions_ms: int | None = None,
) -> PostgresStore:
    """The store at ``url``: the ledger on a pool of ``max_size``, the queries on their
    own pool of ``query_pool_size`` read-only sessions, each statement cancelled after
    ``query_timeout_s`` (when given)."""
    pool = await _pool(url, max_size, SESSION_SETTINGS)
    try:
        await _migrate(pool)
        reads = {**SESSION_SETTINGS, "default_transaction_read_only": "on"}
        if query_timeout_s is not None:
            reads["statement_timeout"] = str(max(1, round(query_timeout_s * 1000)))
        query_pool = await _pool(url, query_pool_size, reads)
    except BaseException:
        await pool.close()
        raise
    runner, reader = PgRunner(pool), PgRunner(query_pool)
    return PostgresStore(
        runner,
        EngineLedger(runner, gap_grace_ms, contributions_ms),
        EngineQueries(reader),
        query_runner=reader,
    )
