"""The SQLite backend: one aiosqlite connection in WAL mode.

SQLite has one writer at a time, so every method runs under one ``asyncio.Lock`` on the
one connection, in an explicit ``BEGIN IMMEDIATE`` transaction: no "database is locked"
surprises halfway through an ingest, and readers see committed data only.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import aiosqlite

from cloud_collector.errors import MigrationError, StoreError
from cloud_collector.store import engine, health
from cloud_collector.store import migrations as mig
from cloud_collector.store.base import (
    BBox,
    CellHour,
    EventPage,
    EventQuery,
    HealthPoint,
    HealthQuery,
    IngestResult,
    RoadQuery,
    SignCluster,
    VehicleHealth,
    VehicleStatus,
)
from cloud_collector.store.engine import Row, Tx
from protocol.batch import Batch
from protocol.envelope import BatchIdentity

T = TypeVar("T")
BUSY_TIMEOUT_MS: Final = 10_000
_PRAGMAS: Final = (
    "PRAGMA journal_mode=WAL",
    # FULL, not NORMAL: the ack goes out right after the commit and lets the taxi delete
    # the batch, so a committed batch must survive a power cut.
    "PRAGMA synchronous=FULL",
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA foreign_keys=ON",
)


class _SqliteTx:
    lock_suffix = ""
    least = "MIN"
    greatest = "MAX"
    merge_counts = (
        "json_patch(road_cells.counts, (SELECT json_group_object(n.key, n.value + COALESCE("
        "(SELECT o.value FROM json_each(road_cells.counts) o WHERE o.key = n.key), 0))"
        " FROM json_each(excluded.counts) n))"
    )
    count_of = "(SELECT value FROM json_each(counts) WHERE key = ?)"

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


class SqliteStore:
    """``Store`` on a SQLite file; create with ``open_sqlite``."""

    def __init__(self, db: aiosqlite.Connection, path: Path, gap_grace_ms: int) -> None:
        self._db = db
        self._path = path
        self._lock = asyncio.Lock()
        self._grace_ms = gap_grace_ms

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Tx]:
        async with self._lock:
            try:
                await self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite {self._path}: cannot begin: {exc}") from exc
            try:
                yield _SqliteTx(self._db)
            except BaseException:
                await self._db.rollback()
                raise
            try:
                await self._db.commit()
            except sqlite3.Error as exc:
                await self._db.rollback()
                raise StoreError(f"sqlite {self._path}: commit failed: {exc}") from exc

    async def _run(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        try:
            async with self._tx() as tx:
                return await work(tx)
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite {self._path}: {exc}") from exc

    async def ingest(
        self, batch: Batch, *, topic_channel: str, payload_bytes: int, received_ms: int
    ) -> IngestResult:
        return await self._run(
            lambda tx: engine.ingest(
                tx,
                batch,
                channel=topic_channel,
                payload_bytes=payload_bytes,
                received_ms=received_ms,
                grace_ms=self._grace_ms,
            )
        )

    async def quarantine(
        self,
        *,
        topic: str,
        payload: bytes,
        reason: str,
        received_ms: int,
        fleet: str | None,
        vehicle: str | None,
    ) -> None:
        await self._run(
            lambda tx: engine.quarantine(
                tx,
                topic=topic,
                payload=payload,
                reason=reason,
                received_ms=received_ms,
                fleet=fleet,
                vehicle=vehicle,
            )
        )

    async def quarantine_batch(
        self,
        *,
        identity: BatchIdentity,
        topic: str,
        payload: bytes,
        reason: str,
        received_ms: int,
    ) -> IngestResult:
        return await self._run(
            lambda tx: engine.quarantine_batch(
                tx,
                identity=identity,
                topic=topic,
                payload=payload,
                reason=reason,
                received_ms=received_ms,
                grace_ms=self._grace_ms,
            )
        )

    async def set_presence(self, *, fleet: str, vehicle: str, online: bool, time_ms: int) -> None:
        await self._run(lambda tx: engine.set_presence(tx, fleet, vehicle, online, time_ms))

    async def health_history(self, q: HealthQuery) -> list[HealthPoint]:
        return await self._run(lambda tx: health.history(tx, q))

    async def vehicle_health(self, vehicle_id: str | None = None) -> list[VehicleHealth]:
        return await self._run(
            lambda tx: health.vehicle_health(
                tx, vehicle_id, engine.STATUS_COLUMNS, engine.status_of
            )
        )

    async def events(self, q: EventQuery) -> EventPage:
        return await self._run(lambda tx: engine.events(tx, q))

    async def road_conditions(self, q: RoadQuery) -> list[CellHour]:
        return await self._run(lambda tx: engine.road_conditions(tx, q))

    async def signs(self, bbox: BBox | None) -> list[SignCluster]:
        return await self._run(lambda tx: engine.signs(tx, bbox))

    async def vehicles(self) -> list[VehicleStatus]:
        return await self._run(engine.vehicles)

    async def vehicle(self, vehicle_id: str) -> VehicleStatus | None:
        return await self._run(lambda tx: engine.vehicle(tx, vehicle_id))

    async def metrics(self) -> dict[str, int | float]:
        return await self._run(engine.metrics)

    async def ping(self) -> None:
        await self._run(lambda tx: tx.fetch("SELECT 1"))

    async def close(self) -> None:
        await self._db.close()


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


async def open_sqlite(path: Path, *, gap_grace_ms: int) -> SqliteStore:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"sqlite {path}: cannot open: {exc}") from exc
    try:
        for pragma in _PRAGMAS:
            await db.execute(pragma)
        await _migrate(db)
    except BaseException as exc:
        await db.close()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"sqlite {path}: {exc}") from exc
        raise
    return SqliteStore(db, path, gap_grace_ms)
