"""The store's side of retention and time partitions: thin adapters over ``retention``.

PostgreSQL: the time series tables are partitioned (migration 0008); partitions are made
ahead of time by ``collector_add_partition`` (which also moves rows of the new period out
of the default partition), expired ones dropped whole, and the rows before the cut in a
partition that straddles it (and in the default partition) deleted by one statement.
SQLite: deletes in batches of ``[retention] batch_rows``, each its own transaction, so
that ingest (one writer at a time) runs between them.

Every call is its own transaction; a DDL
statement that cannot get its lock within ``LOCK_TIMEOUT`` gives up and is retried at the
next run instead of holding ingest up (dropping a partition locks its parent, and the
inserts queue behind the waiting DROP).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Final, Protocol

from cloud_collector.store.engine import Tx
from cloud_collector.store.retention import (
    EARLIEST_PARTITION_MS,
    PARTITIONED,
    PERIODS_AHEAD,
    Delete,
    Expiring,
    Partition,
    expiring,
    period_start,
    wanted_periods,
)
from cloud_collector.store.shared import Runner

LOCK_TIMEOUT: Final = "1s"
# The advisory lock of partition making (an arbitrary constant, like postgres.py's).
PARTITION_LOCK_KEY: Final = 0x50415254  # "PART"
_BOUND = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class StoreMaintenance(Protocol):
    """What the retention job needs from a store."""

    async def partitions(self) -> list[Partition] | None:
        """The partitions of the partitioned tables; None if the store has none."""
        ...

    async def ensure_partitions(self, now_ms: int, cutoffs: Mapping[str, int]) -> list[str]:
        """Create the partitions wanted at ``now_ms``; the names of those created."""
        ...

    async def drop(self, partition: Partition) -> None: ...

    async def delete_batch(self, delete: Delete, limit: int) -> int:
        """Delete up to ``limit`` rows ``delete`` names; how many were deleted."""
        ...


class SqliteMaintenance:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def partitions(self) -> list[Partition] | None:
        return None

    async def ensure_partitions(self, now_ms: int, cutoffs: Mapping[str, int]) -> list[str]:
        return []

    async def drop(self, partition: Partition) -> None:
        raise ValueError(f"sqlite has no partitions to drop ({partition.name})")

    async def delete_batch(self, delete: Delete, limit: int) -> int:
        rel, col = quoted(delete.relation), quoted(delete.column)
        key = ", ".join(quoted(k) for k in expiring(delete.table).key)

        async def work(tx: Tx) -> int:
            await tx.execute(
                f"DELETE FROM {rel} WHERE ({key}) IN"
                f" (SELECT {key} FROM {rel} WHERE {col} < ? LIMIT ?)",
                delete.cut_ms, limit,
            )  # fmt: skip
            rows = await tx.fetch("SELECT changes()")
            return int(rows[0][0])

        return await self._runner.run(work)


class PgMaintenance:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def partitions(self) -> list[Partition]:
        async def work(tx: Tx) -> list[Partition]:
            return await _partitions(tx, [t.table for t in PARTITIONED])

        return await self._runner.run(work)

    async def ensure_partitions(self, now_ms: int, cutoffs: Mapping[str, int]) -> list[str]:
        created: list[str] = []
        for table in PARTITIONED:
            created += await self._runner.run(_ensuring(table, now_ms, cutoffs.get(table.table)))
        return created

    async def drop(self, partition: Partition) -> None:
        async def work(tx: Tx) -> None:
            await tx.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            await tx.execute(f"DROP TABLE IF EXISTS {quoted(partition.name)}")

        await self._runner.run(work)

    async def delete_batch(self, delete: Delete, limit: int) -> int:
        """All of them in one statement, whatever ``limit``: a DELETE never blocks
        PostgreSQL's inserts (MVCC), what is left to delete is at most one partition's
        period (the rest went with whole partitions), and the time series tables have no
        index on time alone, so each batch of a LIMIT would scan the partition again."""
        rel, col = quoted(delete.relation), quoted(delete.column)

        async def work(tx: Tx) -> int:
            rows = await tx.fetch(
                f"WITH gone AS (DELETE FROM {rel} WHERE {col} < ? RETURNING 1)"
                " SELECT COUNT(*) FROM gone",
                delete.cut_ms,
            )
            return int(rows[0][0])

        return await self._runner.run(work)


async def _partitions(tx: Tx, parents: Sequence[str]) -> list[Partition]:
    rows = await tx.fetch(
        "SELECT p.relname, c.relname, pg_get_expr(c.relpartbound, c.oid)"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_class p ON p.oid = i.inhparent"
        " WHERE p.relname = ANY(?::text[]) AND pg_table_is_visible(p.oid)"
        " ORDER BY p.relname, c.relname",
        list(parents),
    )
    out = []
    for parent, name, bound in rows:
        match = _BOUND.search(bound)
        lo, hi = (int(match[1]), int(match[2])) if match else (None, None)
        out.append(Partition(parent, name, lo, hi))
    return out


def _ensuring(
    table: Expiring, now_ms: int, cut_ms: int | None
) -> Callable[[Tx], Awaitable[list[str]]]:
    async def work(tx: Tx) -> list[str]:
        return await _ensure(tx, table, now_ms, cut_ms)

    return work


async def _ensure(tx: Tx, table: Expiring, now_ms: int, cut_ms: int | None) -> list[str]:
    width = table.width_ms
    assert width is not None
    await tx.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    # Every collector of a deployment runs this job: while one makes the partitions, the
    # others leave it to that one.
    locked = await tx.fetch("SELECT pg_try_advisory_xact_lock(?)", PARTITION_LOCK_KEY)
    if not locked[0][0]:
        return []
    floor = max(EARLIEST_PARTITION_MS, cut_ms or EARLIEST_PARTITION_MS)
    end = period_start(now_ms, width) + (PERIODS_AHEAD + 1) * width
    col = quoted(table.column)
    occupied = await tx.fetch(
        f"SELECT DISTINCT collector_period_start({col}, ?)"
        f" FROM {quoted(table.table + '_default')} WHERE {col} >= ? AND {col} < ?",
        width, floor, end,
    )  # fmt: skip
    have = {p.lo for p in await _partitions(tx, [table.table])}
    created = []
    for start in wanted_periods(now_ms, table, cut_ms, [int(r[0]) for r in occupied]):
        if start in have:
            continue
        rows = await tx.fetch(
            "SELECT collector_add_partition(?, ?, ?, ?)", table.table, table.column, width, start
        )
        if rows[0][0] is not None:
            created.append(str(rows[0][0]))
    return created


def maintenance_for(store: object) -> StoreMaintenance:
    """The adapter for ``store`` (a store ``open_store`` returned)."""
    from cloud_collector.store.postgres import PostgresStore
    from cloud_collector.store.sqlite import SqliteStore

    if isinstance(store, PostgresStore):
        return PgMaintenance(store.runner)
    if isinstance(store, SqliteStore):
        return SqliteMaintenance(store.runner)
    raise TypeError(f"no retention support for a store of type {type(store).__name__}")
