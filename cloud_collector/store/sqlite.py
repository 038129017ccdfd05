"""The SQLite backend: aiosqlite connections in WAL mode, one for each side.

SQLite has one writer at a time, so every method of the ledger runs under one
``asyncio.Lock`` on its connection, in an explicit ``BEGIN IMMEDIATE`` transaction: no
"database is locked" surprises halfway through an ingest. The query side reads on a
connection of its own (``query_only``, deferred ``BEGIN``): WAL lets it read committed
data while ingest writes, so a long query never holds up a batch's commit, and a query
running past its timeout is interrupted (a progress handler). A transaction that fails
or is cancelled at any point is rolled back, at the latest by the next one (see
``SqliteRunner``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import aiosqlite

from cloud_collector.errors import MigrationError, QueryTimeoutError, StoreError
from cloud_collector.store import migrations as mig
from cloud_collector.store.engine import Row, Tx
from cloud_collector.store.ledger import EngineLedger
from cloud_collector.store.progress import TxStats, counted
from cloud_collector.store.queries import EngineQueries
from cloud_collector.store.shared import SplitStore

T = TypeVar("T")
log = logging.getLogger(__name__)
BUSY_TIMEOUT_MS: Final = 10_000
_PRAGMAS: Final = (
    "PRAGMA journal_mode=WAL",
    # FULL, not NORMAL: the ack goes out right after the commit and lets the taxi delete
    # the batch, so a committed batch must survive a power cut.
    "PRAGMA synchronous=FULL",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
)
# SQLite VM instructions between two looks at the query side's deadline.
PROGRESS_STEPS: Final = 10_000


def _merged(old: str, new: str) -> str:
    """The JSON object of counts ``old`` plus ``new``, key by key (``new`` not empty)."""
    return (
        f"json_patch({old}, (SELECT json_group_object(n.key, n.value + COALESCE("
        f"(SELECT o.value FROM json_each({old}) o WHERE o.key = n.key), 0))"
        f" FROM json_each({new}) n))"
    )


class _SqliteTx:
    lock_suffix = ""
    least = "MIN"
    greatest = "MAX"
    merge_counts = _merged("road_cells.counts", "excluded.counts")
    count_of = "(SELECT value FROM json_each(counts) WHERE key = ?)"
    json_entries = "json_each"
    entry_number = "CASE WHEN j.type IN ('integer', 'real') THEN j.value END"
    events_by_time_pos = "events INDEXED BY events_time_pos"
    events_by_cell_time = "events INDEXED BY events_cell_time"
    json_object_agg = "json_group_object"

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def execute(self, sql: str, *args: object) -> None:
        await self._db.execute(sql, args)

    async def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        await self._db.executemany(sql, rows)

    async def fetch(self, sql: str, *args: object) -> list[Row]:
        async with self._db.execute(sql, args) as cursor:
            return list(await cursor.fetchall())

    async def fetch_columns(self, sql: str, width: int, *args: object) -> list[Sequence[Any]]:
        rows = await self.fetch(sql, *args)
        return list(zip(*rows, strict=True)) if rows else [()] * width

    async def lock_signs(self) -> None:
        """Nothing to do: the whole transaction already holds SQLite's write lock."""

    def merge_json(self, old: str, new: str) -> str:
        return _merged(old, new)

    async def lock_day_sums(self, exclusive: bool) -> None:
        """Nothing to do: one writer at a time (see ``lock_signs``)."""


class SqliteRunner:
    """One connection's transactions (``shared.Runner``): the ledger's (SQLite has one
    writer per file anyway, and one lock and one repair path, below, cover every write)
    or, with ``begin="BEGIN"`` and a ``timeout_s``, the query side's.

    aiosqlite runs each statement in its own thread, and cancelling the task that awaits
    one does not stop it: a cancelled ``BEGIN`` still opens a transaction, a cancelled
    ``ROLLBACK`` may not have run yet. So a transaction counts as open from ``BEGIN``
    until its ``COMMIT`` or ``ROLLBACK`` has been seen to finish, and the next transaction
    first rolls back whatever is still open (queued behind the orphaned statement, so it
    runs after it). A rollback that fails means the connection itself is broken: it is
    replaced by a new one.
    """

    def __init__(
        self,
        db: aiosqlite.Connection,
        path: Path,
        *,
        begin: str = "BEGIN IMMEDIATE",
        timeout_s: float | None = None,
        pragmas: tuple[str, ...] = (),
    ) -> None:
        self._db = db
        self._path = path
        self._begin = begin
        self._pragmas = pragmas
        self._timeout_s = timeout_s
        # Monotonic time past which the running statement is interrupted (None: never).
        self._deadline: float | None = None
        self._lock = asyncio.Lock()
        self._open = False
        self.reconnects = 0
        self.tx_stats = TxStats()

    async def prepare(self) -> None:
        """Set this runner's own ``pragmas`` on its connection, and interrupt statements
        that run past ``timeout_s``; again on every new connection."""
        for pragma in self._pragmas:
            await self._db.execute(pragma)
        if self._timeout_s is not None:
            await self._db.set_progress_handler(self._over_time, PROGRESS_STEPS)

    def _over_time(self) -> int:
        # Runs in the connection's thread; non-zero makes SQLite interrupt the statement.
        deadline = self._deadline
        return int(deadline is not None and time.monotonic() > deadline)

    async def run(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        return await counted(self.tx_stats, self._transact(work))

    async def _transact(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        async with self._lock:
            await self._settle()
            self._open = True
            try:
                try:
                    await self._db.execute(self._begin)
                except ValueError as exc:  # aiosqlite: the connection is closed
                    raise sqlite3.InterfaceError(f"connection lost: {exc}") from exc
                if self._timeout_s is not None:
                    self._deadline = time.monotonic() + self._timeout_s
                try:
                    result = await work(_SqliteTx(self._db))
                    self._deadline = None
                    await self._db.commit()
                except BaseException:
                    self._deadline = None
                    # A failed rollback leaves ``_open`` set: the next call repairs it.
                    with contextlib.suppress(sqlite3.Error):
                        await self._db.rollback()
                        self._open = False
                    raise
            except sqlite3.OperationalError as exc:
                if str(exc) == "interrupted":
                    raise QueryTimeoutError(
                        f"query ran longer than {self._timeout_s} s and was cancelled"
                    ) from exc
                raise StoreError(f"sqlite {self._path}: {exc}") from exc
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite {self._path}: {exc}") from exc
            self._open = False
            return result

    async def _settle(self) -> None:
        """Roll back what an interrupted transaction left open (a no-op if nothing is)."""
        if not self._open:
            return
        try:
            await self._db.rollback()
        except (sqlite3.Error, ValueError) as exc:  # ValueError: the connection is closed
            log.warning(
                "sqlite %s: rollback failed (%s); reopening the connection", self._path, exc
            )
            with contextlib.suppress(sqlite3.Error, ValueError):
                await self._db.close()
            self._db = await _connect(self._path)
            await self.prepare()
            self.reconnects += 1
        self._open = False

    async def close(self) -> None:
        await self._db.close()


class SqliteStore(SplitStore[SqliteRunner]):
    """``base.Store`` on a SQLite file; create with ``open_sqlite``."""


async def _migrate(db: aiosqlite.Connection) -> None:
    await db.execute(mig.CREATE_TABLE)
    await db.commit()
    async with db.execute("SELECT version FROM schema_migrations") as cursor:
        applied = {int(r[0]) for r in await cursor.fetchall()}
    for m in mig.pending(mig.load("sqlite"), applied):
        try:
            # executescript commits first; the BEGIN/COMMIT around the script and the
            # version row make each migration all-or-nothing.
            await db.executescript(
                f"BEGIN IMMEDIATE;\n{m.sql}\n"
                "INSERT INTO schema_migrations (version, name, applied_ms)"
                f" VALUES ({m.version}, '{m.name}', {int(time.time() * 1000)});\nCOMMIT;"
            )
        except sqlite3.Error as exc:
            await db.rollback()
            raise MigrationError(f"sqlite migration {m.version}_{m.name} failed: {exc}") from exc


async def _connect(path: Path) -> aiosqlite.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"sqlite {path}: cannot open: {exc}") from exc
    try:
        for pragma in _PRAGMAS:
            await db.execute(pragma)
    except BaseException as exc:
        await db.close()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"sqlite {path}: {exc}") from exc
        raise
    return db


async def _query_runner(path: Path, timeout_s: float | None) -> SqliteRunner:
    """The query side's connection: reads only, deferred transactions, a deadline."""
    db = await _connect(path)
    runner = SqliteRunner(
        db, path, begin="BEGIN", timeout_s=timeout_s, pragmas=("PRAGMA query_only=ON",)
    )
    try:
        await runner.prepare()
    except sqlite3.Error as exc:
        await db.close()
        raise StoreError(f"sqlite {path}: {exc}") from exc
    return runner


async def open_sqlite(
    path: Path,
    *,
    gap_grace_ms: int | None,
    query_timeout_s: float | None = None,
    contributions_ms: int | None = None,
) -> SqliteStore:
    """The store at ``path``: the ledger on one connection, the queries on another
    (each query cancelled after ``query_timeout_s``, when given)."""
    db = await _connect(path)
    try:
        await _migrate(db)
    except BaseException as exc:
        await db.close()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"sqlite {path}: {exc}") from exc
        raise
    runner = SqliteRunner(db, path)
    try:
        reader = await _query_runner(path, query_timeout_s)
    except BaseException:
        await db.close()
        raise
    return SqliteStore(
        runner,
        EngineLedger(runner, gap_grace_ms, contributions_ms),
        EngineQueries(reader),
        query_runner=reader,
    )
