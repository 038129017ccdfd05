"""The durable outbox: every record is written here before anything else happens to it.

Records are staged per lane (urgent events, health, bulk) as small msgpack chunks, closed
into wire batches with ``(epoch, seq)`` by the policy in ``edge_agent.batching``, and kept
until the collector's end-to-end ack (``acknowledge``) or eviction deletes them. Each
public method is one SQLite transaction.

Durability: ``synchronous=FULL`` (see ``_PRAGMAS``). A power cut loses at most the
transaction being committed, which the caller never saw succeed.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import aiosqlite

from edge_agent.batching import (
    CAUSE_SPACE,
    DEFAULT_RESERVE_BYTES,
    EVICTED_FOR_SPACE,
    EVICTION_CAUSE,
    LANES,
    PRIORITY,
    SPACE_EVICTS_BELOW,
    BatchPolicy,
    Candidate,
    Chunk,
    choose_victims,
    eviction_need,
    plan_batches,
    should_close,
)
from edge_agent.errors import OutboxError
from protocol import wire
from protocol.batch import Batch
from protocol.body import Body, body_from_wire, body_to_wire, time_span
from protocol.codec import encode_batch
from protocol.errors import ProtocolError
from protocol.ids import is_valid_id
from protocol.limits import MAX_ARRAY_LEN, MAX_BODY_BYTES, MAX_HEALTH_VALUES, MAX_TEXT_BYTES
from protocol.records import Event, GnssFix, Health, RawFrame, SignalSeries
from protocol.topics import Channel

log = logging.getLogger(__name__)

# "TXOB" in the database header: a foreign SQLite file (application_id 0 or another value)
# is recognised and never mistaken for an outbox.
APPLICATION_ID: Final = 0x54584F42
SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_MS: Final = 5_000

# Keys of the ``meta`` table.
META_EPOCH: Final = "epoch"  # decimal text: a uint64 does not fit SQLite's signed INTEGER
META_NEXT_SEQ: Final = "next_seq"
META_ACKED_SEQ: Final = "acked_seq"
META_CHECKPOINT: Final = "checkpoint"
META_HEALTH: Final = "latest_health"  # JSON {"time_ms": ..., "values": {...}}

# Counters besides the eviction causes of edge_agent.batching.
EVICTED_RECORDS: Final = "evicted_records"
DROPPED_INVALID: Final = "dropped_invalid"

_SCHEMA: Final = (
    # Byte sizes are stored so the cap is enforced without reading blobs. Blobs are the
    # last column: scans reading only the small columns never touch their overflow pages.
    """CREATE TABLE staged(
        id INTEGER PRIMARY KEY,
        lane TEXT NOT NULL,
        staged_ms INTEGER NOT NULL,
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        n_records INTEGER NOT NULL,
        size INTEGER NOT NULL,
        body BLOB NOT NULL)""",
    """CREATE TABLE batches(
        seq INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        priority INTEGER NOT NULL,
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        n_records INTEGER NOT NULL,
        size INTEGER NOT NULL,
        published_ms INTEGER,
        publish_count INTEGER NOT NULL DEFAULT 0,
        payload BLOB NOT NULL)""",
    # Publish order is (priority DESC, seq): the index lets LIMIT stop early on a backlog.
    "CREATE INDEX batches_publish_order ON batches(priority DESC, seq)",
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
)

_PRAGMAS: Final = (
    "PRAGMA journal_mode=WAL",
    # FULL, not NORMAL. In WAL mode NORMAL never corrupts the file, but commits are only
    # made durable at the next WAL checkpoint, so a power cut can roll back many seconds of
    # committed transactions. That is worse than losing data: a rolled-back
    # close_due_batches whose batches were already published (and maybe committed by the
    # collector) would, after restart, reissue the same seqs with different records, and
    # the collector's receipt dedup would silently drop them. With FULL every commit is
    # fsynced before it returns, so anything the caller saw stored (records, checkpoint,
    # seqs, acks) survives; at most the commit in flight is lost. Cost: the agent commits
    # about once a second plus once per publish round, a few fsyncs/s against an SD card's
    # budget of 50-300 commits/s, because every call batches all its rows into one commit.
    "PRAGMA synchronous=FULL",
    # Keep the WAL from staying large after a burst (a backlog drain, a big eviction).
    "PRAGMA journal_size_limit=8388608",
    # Debian's SQLite zeroes every freed page by default (secure_delete=ON), so deleting
    # acked or evicted batches wrote their whole size again to the WAL: twice the SD card
    # wear, and on a full disk an eviction needed as much room as it was to free. FAST
    # still clears deleted rows inside b-tree pages, not freed overflow pages.
    "PRAGMA secure_delete=FAST",
)

# Shared with the read-only status reader.
BATCH_TOTALS_SQL: Final = (
    "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(first_ms),"
    " COALESCE(SUM(published_ms IS NULL), 0) FROM batches"
)
STAGED_TOTALS_SQL: Final = (
    "SELECT COALESCE(SUM(n_records), 0), COALESCE(SUM(size), 0), MIN(first_ms) FROM staged"
)
COUNTERS_SQL: Final = "SELECT name, value FROM counters ORDER BY name"

_UPSERT_META: Final = (
    "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value"
)
_BUMP_COUNTER: Final = (
    "INSERT INTO counters(name, value) VALUES(?, ?)"
    " ON CONFLICT(name) DO UPDATE SET value=value + excluded.value"
)
# SQLite result codes (low byte) meaning "this file is damaged or not a database".
_CORRUPT_CODES: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


@dataclass(frozen=True)
class Records:
    """What the pipeline hands over, roughly every second."""

    events: tuple[Event, ...] = ()
    signals: tuple[SignalSeries, ...] = ()
    gnss: tuple[GnssFix, ...] = ()
    frames: tuple[RawFrame, ...] = ()
    health: tuple[Health, ...] = ()


@dataclass(frozen=True)
class StoredBatch:
    """A closed batch waiting for its end-to-end ack; ``payload`` is the wire batch."""

    epoch: int
    seq: int
    channel: str
    payload: bytes
    priority: int
    first_ms: int
    last_ms: int
    publish_count: int


@dataclass(frozen=True)
class OutboxStats:
    epoch: int
    next_seq: int
    highest_acked_seq: int
    pending_batches: int  # closed, not yet acknowledged end to end
    pending_bytes: int
    unpublished_batches: int  # of those, never PUBACKed by the broker
    staged_records: int
    staged_bytes: int
    oldest_pending_age_ms: int | None  # oldest record not yet acknowledged (batch or staged)
    counters: Mapping[str, int] = field(default_factory=dict)  # evictions and drops by cause


class _CorruptError(Exception):
    """The file at the outbox path is not a usable outbox; the reason is the message."""


class OutboxFullError(OutboxError):
    """A write failed because the disk is full (SQLITE_FULL); it stored nothing."""


def filesystem_free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged process may still write on the filesystem holding ``path``
    (the agent runs as its own user, so root's reserved blocks do not count)."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


# Record chunks ---------------------------------------------------------------------------


def _n_records(body: Body) -> int:
    return body.counts().total


def _encode_chunk(body: Body) -> tuple[bytes, int, int]:
    """The body as compact msgpack (protocol's column-wise body map, times relative to the
    chunk's first time), plus that first and last time. Runs the protocol's full checks,
    so a record that could never be sent is refused before it is stored."""
    span = time_span(body)
    assert span is not None
    body_wire = body_to_wire(body, *span, MAX_ARRAY_LEN)
    body_from_wire(body_wire, *span, MAX_ARRAY_LEN)
    return wire.pack(body_wire), span[0], span[1]


def _decode_chunk(blob: bytes, first_ms: int, last_ms: int) -> Body:
    body_wire = wire.unpack_map(
        blob,
        max_str_len=MAX_TEXT_BYTES,
        max_bin_len=MAX_BODY_BYTES,
        max_array_len=MAX_ARRAY_LEN,
        max_map_len=MAX_HEALTH_VALUES,
    )
    return body_from_wire(body_wire, first_ms, last_ms, MAX_ARRAY_LEN)


def _halves(body: Body) -> tuple[Body, Body]:
    items = [(kind, record) for kind, records in enumerate(body) for record in records]
    middle = len(items) // 2
    parts = []
    for part in (items[:middle], items[middle:]):
        columns: list[list[object]] = [[] for _ in body]
        for kind, record in part:
            columns[kind].append(record)
        parts.append(Body(*(tuple(column) for column in columns)))  # type: ignore[arg-type]
    return parts[0], parts[1]


def _chunks(policy: BatchPolicy, body: Body) -> list[tuple[bytes, int, int, int]]:
    """(blob, first_ms, last_ms, n_records) pieces of ``body``, each within the policy's
    batch limits unless it is a single record."""
    if not any(body):
        return []
    blob, first, last = _encode_chunk(body)
    count = _n_records(body)
    too_big = len(blob) > policy.max_bytes or count > policy.max_records
    if too_big and sum(map(len, body)) > 1:
        left, right = _halves(body)
        return _chunks(policy, left) + _chunks(policy, right)
    return [(blob, first, last, count)]


def _lanes(policy: BatchPolicy, records: Records) -> dict[str, Body]:
    urgent = tuple(e for e in records.events if policy.is_urgent(e.type))
    other = tuple(e for e in records.events if not policy.is_urgent(e.type))
    return {
        Channel.EVENT: Body(events=urgent),
        Channel.HEALTH: Body(health=records.health),
        Channel.BATCH: Body(
            signals=records.signals, events=other, gnss=records.gnss, frames=records.frames
        ),
    }


def _merge(bodies: Sequence[Body]) -> Body:
    """One body from chunks in staging order; series of the same signal are joined, which
    keeps a 10-s batch to one series per signal (smaller and better compressed)."""
    series: dict[tuple[str, str], tuple[list[int], list[float | int | None]]] = {}
    for body in bodies:
        for s in body.signals:
            times, values = series.setdefault((s.name, s.unit), ([], []))
            times.extend(s.times_ms)
            values.extend(s.values)
    return Body(
        signals=tuple(
            SignalSeries(name, tuple(times), tuple(values), unit)
            for (name, unit), (times, values) in series.items()
        ),
        events=tuple(e for b in bodies for e in b.events),
        gnss=tuple(f for b in bodies for f in b.gnss),
        frames=tuple(f for b in bodies for f in b.frames),
        health=tuple(h for b in bodies for h in b.health),
    )


def _health_json(health: Sequence[Health]) -> str:
    latest = max(health, key=lambda h: h.time_ms)
    return json.dumps({"time_ms": latest.time_ms, "values": latest.values}, sort_keys=True)


# Opening ---------------------------------------------------------------------------------


def lock_path(path: Path) -> Path:
    """The lock file beside the outbox; it holds the pid of the process that has it open."""
    return path.with_name(path.name + ".lock")


def _take_lock(path: Path) -> int:
    """Take the outbox's exclusive lock; the returned descriptor holds it until closed.

    Two writers would issue the same seqs with different records, and the collector would
    drop the second as duplicates: a second opener is refused, naming the holder. flock
    is released by the kernel when the holder dies, so a killed agent never leaves a
    stale lock behind.
    """
    lock = lock_path(path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OutboxError(f"outbox {path}: cannot open lock file {lock}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise OutboxError(
            f"outbox {path} is in use by another process (pid {holder}, lock file {lock})"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise OutboxError(f"outbox {path}: cannot lock {lock}: {exc.strerror}") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise OutboxError(f"outbox {path}: cannot write lock file {lock}: {exc.strerror}") from None
    return fd


@contextmanager
def _sqlite_errors(path: Path, what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        if _is_disk_full(exc):
            raise OutboxFullError(f"outbox {path}: cannot {what}: disk full") from exc
        raise OutboxError(f"outbox {path}: cannot {what}: {exc}") from exc


def _is_disk_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) == sqlite3.SQLITE_FULL


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in _CORRUPT_CODES


async def _scalar(db: aiosqlite.Connection, sql: str, params: Sequence[object] = ()) -> object:
    async with db.execute(sql, params) as cursor:
        row = await cursor.fetchone()
    return None if row is None else row[0]


async def _create(db: aiosqlite.Connection) -> None:
    await db.execute("BEGIN IMMEDIATE")
    for statement in _SCHEMA:
        await db.execute(statement)
    # Header pragmas are transactional: a crash here leaves an empty file, created again.
    await db.execute(f"PRAGMA application_id={APPLICATION_ID}")
    await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    epoch = secrets.randbits(64) or 1
    await db.executemany(
        _UPSERT_META, [(META_EPOCH, str(epoch)), (META_NEXT_SEQ, 1), (META_ACKED_SEQ, 0)]
    )
    await db.execute("COMMIT")
    log.info("outbox created with epoch %d", epoch)


async def _check(db: aiosqlite.Connection) -> None:
    """Create the schema in an empty file, or raise _CorruptError if it is not a healthy outbox."""
    try:
        app_id = await _scalar(db, "PRAGMA application_id")
        version = await _scalar(db, "PRAGMA user_version")
        objects = await _scalar(db, "SELECT COUNT(*) FROM sqlite_master")
        if app_id == 0 and version == 0 and objects == 0:
            await db.execute("PRAGMA journal_mode=WAL")
            await _create(db)
            return
        if app_id != APPLICATION_ID:
            raise _CorruptError(f"not an outbox (application_id {app_id})")
        if version != SCHEMA_VERSION:
            raise _CorruptError(f"schema version {version}, expected {SCHEMA_VERSION}")
        async with db.execute("PRAGMA quick_check") as cursor:
            problems = [str(row[0]) for row in await cursor.fetchall()]
        if problems != ["ok"]:
            raise _CorruptError("quick_check: " + "; ".join(problems[:5]))
        if await _scalar(db, "SELECT value FROM meta WHERE key=?", (META_EPOCH,)) is None:
            raise _CorruptError("no epoch stored")
    except sqlite3.Error as exc:
        if _is_corruption(exc) or "no such table" in str(exc):
            raise _CorruptError(str(exc)) from exc
        raise


def _move_aside(path: Path, reason: str) -> Path:
    stamp = int(time.time())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}.{n}")
        n += 1
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(Path(f"{target}{suffix}"))
    log.error(
        "OUTBOX FILE UNUSABLE: %s (%s); moved aside to %s, starting a new outbox with a new "
        "epoch. Unsent data in the old file is not sent.",
        path,
        reason,
        target,
    )
    return target


async def _connect(path: Path) -> aiosqlite.Connection:
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE takes the write
    # lock up front, so a transaction never fails half-way on a lock upgrade).
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        await _check(db)
        for pragma in _PRAGMAS:
            await db.execute(pragma)
        mode = await _scalar(db, "PRAGMA journal_mode")
        if mode != "wal":
            log.warning("outbox %s: journal_mode is %s, not wal", path, mode)
    except BaseException:
        await db.close()
        raise
    return db


# The outbox ------------------------------------------------------------------------------


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _serialized(
    method: Callable[Concatenate[Outbox, _P], Awaitable[_R]],
) -> Callable[Concatenate[Outbox, _P], Coroutine[Any, Any, _R]]:
    """Run the method under the outbox's lock.

    Every method is its own transaction on one connection: two tasks interleaving theirs
    (the publisher marking while the flusher appends) would nest BEGINs, and a read in the
    middle of another task's write could see a batch that is then rolled back.
    """

    @functools.wraps(method)
    async def locked(self: Outbox, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        async with self._lock:
            return await method(self, *args, **kwargs)

    return locked


def _skipped_when_full(
    default: _R,
) -> Callable[
    [Callable[Concatenate[Outbox, _P], Coroutine[Any, Any, _R]]],
    Callable[Concatenate[Outbox, _P], Coroutine[Any, Any, _R]],
]:
    """For writes that may be skipped when the disk is full: a PUBACK not recorded means a
    resend, an ack not applied means the batches are sent again and acknowledged again.
    Neither is worth stopping the uplink (and so the agent) for."""

    def wrap(
        method: Callable[Concatenate[Outbox, _P], Coroutine[Any, Any, _R]],
    ) -> Callable[Concatenate[Outbox, _P], Coroutine[Any, Any, _R]]:
        @functools.wraps(method)
        async def guarded(self: Outbox, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return await method(self, *args, **kwargs)
            except OutboxFullError as exc:
                log.warning("%s; skipped, done again later", exc)
                return default

        return guarded

    return wrap


def _unmarked_held_back(
    method: Callable[..., Coroutine[Any, Any, list[StoredBatch]]],
) -> Callable[..., Coroutine[Any, Any, list[StoredBatch]]]:
    """For ``due_for_publish``: a batch whose PUBACK could not be recorded (disk full)
    is not due again before ``resend_after_ms``, as if it had been recorded; otherwise it
    would be published again at once, over and over, while the disk stays full."""

    @functools.wraps(method)
    async def held_back(
        self: Outbox, now_ms: int, *, limit: int, resend_after_ms: int
    ) -> list[StoredBatch]:
        due = await method(self, now_ms, limit=limit, resend_after_ms=resend_after_ms)
        if not self._unmarked:
            return due
        now = time.monotonic()
        for seq in [s for s, at in self._unmarked.items() if now - at >= resend_after_ms / 1000]:
            del self._unmarked[seq]
        return [b for b in due if b.seq not in self._unmarked]

    return held_back


class Outbox:
    """The agent's SQLite outbox. Safe for the tasks of one process; a second process
    opening the same file is refused (see ``_take_lock``)."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        path: Path,
        *,
        fleet_id: str,
        vehicle_id: str,
        max_bytes: int,
        policy: BatchPolicy,
        epoch: int,
    ) -> None:
        self._db: aiosqlite.Connection | None = db
        self._lock = asyncio.Lock()
        self._lock_fd: int | None = None  # the file lock against a second process
        self.path = path
        self.fleet_id = fleet_id
        self.vehicle_id = vehicle_id
        self.max_bytes = max_bytes
        self.policy = policy
        self.epoch = epoch
        self._next_seq = 1
        self._acked_seq = 0
        self._batch_bytes = 0
        self._staged_bytes = 0
        self.reserve_bytes = DEFAULT_RESERVE_BYTES
        # Writes that failed because the disk was full, since open (for health).
        self.space_failures = 0
        # Free space was below the reserve at the last write: checkpoint after each commit
        # so the WAL is reused from its start instead of growing.
        self._low_space = False
        # Seqs whose PUBACK could not be recorded for lack of space -> monotonic time.
        self._unmarked: dict[int, float] = {}

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        fleet_id: str,
        vehicle_id: str,
        max_bytes: int = 256 << 20,
        policy: BatchPolicy | None = None,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    ) -> Outbox:
        """Open or create the outbox at ``path``. A corrupt or foreign file is moved aside
        (logged as an error) and a new outbox with a new epoch is started. Batches are
        evicted beyond ``max_bytes`` stored, and when the filesystem has less than
        ``reserve_bytes`` free (see ``edge_agent.batching.eviction_need``)."""
        for what, value in (("fleet", fleet_id), ("vehicle", vehicle_id)):
            if not is_valid_id(value):
                raise ValueError(f"{value!r} is not a valid {what} id")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        if reserve_bytes < 0:
            raise ValueError(f"reserve_bytes must be >= 0, not {reserve_bytes}")
        lock_fd = _take_lock(path)
        try:
            outbox = await cls._open_locked(
                path,
                lock_fd,
                fleet_id=fleet_id,
                vehicle_id=vehicle_id,
                max_bytes=max_bytes,
                policy=policy or BatchPolicy(),
            )
        except BaseException:
            os.close(lock_fd)
            raise
        outbox.reserve_bytes = reserve_bytes
        return outbox

    @classmethod
    async def _open_locked(
        cls,
        path: Path,
        lock_fd: int,
        *,
        fleet_id: str,
        vehicle_id: str,
        max_bytes: int,
        policy: BatchPolicy,
    ) -> Outbox:
        with _sqlite_errors(path, "open"):
            try:
                db = await _connect(path)
            except _CorruptError as exc:
                try:
                    _move_aside(path, str(exc))
                except OSError as move_exc:
                    raise OutboxError(
                        f"outbox {path} is unusable ({exc}) and cannot be moved aside: {move_exc}"
                    ) from move_exc
                db = await _connect(path)
            try:
                epoch = int(
                    str(await _scalar(db, "SELECT value FROM meta WHERE key=?", (META_EPOCH,)))
                )
                outbox = cls(
                    db,
                    path,
                    fleet_id=fleet_id,
                    vehicle_id=vehicle_id,
                    max_bytes=max_bytes,
                    policy=policy,
                    epoch=epoch,
                )
                outbox._lock_fd = lock_fd
                await outbox._load_state()
            except BaseException:
                await db.close()
                raise
        return outbox

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def _require(self) -> aiosqlite.Connection:
        if self._db is None:
            raise OutboxError(f"outbox {self.path} is closed")
        return self._db

    async def _load_state(self) -> None:
        db = self._require()
        async with db.execute(
            "SELECT key, value FROM meta WHERE key IN (?, ?)", (META_NEXT_SEQ, META_ACKED_SEQ)
        ) as cursor:
            meta = {str(k): int(v) for k, v in await cursor.fetchall()}
        self._next_seq = meta[META_NEXT_SEQ]
        self._acked_seq = meta[META_ACKED_SEQ]
        self._batch_bytes = int(
            str(await _scalar(db, "SELECT COALESCE(SUM(size), 0) FROM batches"))
        )
        self._staged_bytes = int(
            str(await _scalar(db, "SELECT COALESCE(SUM(size), 0) FROM staged"))
        )

    @asynccontextmanager
    async def _transaction(self, what: str) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction. On any failure it is rolled back and the in-memory
        totals are reloaded from the file, so memory never runs ahead of the disk."""
        db = self._require()
        with _sqlite_errors(self.path, what):
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                await db.execute("COMMIT")
            except BaseException as exc:
                if isinstance(exc, sqlite3.Error) and _is_disk_full(exc):
                    self.space_failures += 1
                try:
                    # SQLite itself rolls back after some errors (SQLITE_FULL at COMMIT):
                    # a second ROLLBACK would fail and skip reloading the totals.
                    if db.in_transaction:
                        await db.execute("ROLLBACK")
                    await self._load_state()
                except sqlite3.Error:
                    log.exception("outbox %s: rollback after a failed %s failed", self.path, what)
                raise

    async def _reusable_bytes(self, db: aiosqlite.Connection) -> int:
        """Free pages inside the database file, as this transaction sees them."""
        pages = await _scalar(db, "PRAGMA freelist_count")
        size = await _scalar(db, "PRAGMA page_size")
        return int(str(pages)) * int(str(size))

    async def _evict(
        self, db: aiosqlite.Connection, total_bytes: int, *, full: bool = False
    ) -> int:
        """Evict batches until ``total_bytes`` fits the cap and, below the free-space
        reserve (or with ``full``: a write failed for space), until the file has room
        inside (``eviction_need``); returns the bytes freed."""
        free = 0 if full else filesystem_free_bytes(self.path)
        self._low_space = free is not None and free < self.reserve_bytes
        need = eviction_need(
            stored_bytes=total_bytes,
            max_bytes=self.max_bytes,
            free_bytes=free,
            reserve_bytes=self.reserve_bytes,
            reusable_bytes=await self._reusable_bytes(db) if self._low_space else 0,
        )
        if need.nbytes <= 0:
            return 0
        async with db.execute("SELECT priority, seq, size, n_records FROM batches") as cursor:
            rows = list(await cursor.fetchall())
        records = {int(r[1]): int(r[3]) for r in rows}
        victims = choose_victims(
            (Candidate(int(r[0]), int(r[1]), int(r[2])) for r in rows),
            need.nbytes,
            below_priority=SPACE_EVICTS_BELOW if need.cause == CAUSE_SPACE else None,
        )
        if not victims:
            return 0
        await db.executemany("DELETE FROM batches WHERE seq=?", [(v.seq,) for v in victims])
        by_cause: dict[str, int] = {}
        for v in victims:
            cause = EVICTION_CAUSE[v.priority]
            by_cause[cause] = by_cause.get(cause, 0) + 1
        by_cause[EVICTED_RECORDS] = sum(records[v.seq] for v in victims)
        if need.cause == CAUSE_SPACE:
            by_cause[EVICTED_FOR_SPACE] = len(victims)
        await db.executemany(_BUMP_COUNTER, list(by_cause.items()))
        freed = sum(v.nbytes for v in victims)
        reason = (
            f"{free} bytes free on its disk, reserve {self.reserve_bytes}"
            if need.cause == CAUSE_SPACE
            else f"over its cap of {self.max_bytes} bytes"
        )
        log.warning(
            "outbox %s: evicted %d batches (%d bytes, seqs %d..%d): %s",
            reason,
            len(victims),
            freed,
            min(v.seq for v in victims),
            max(v.seq for v in victims),
            by_cause,
        )
        return freed

    async def _checkpoint_if_low(self) -> None:
        """With little free space, copy the WAL into the database after each commit: the
        next transaction then reuses the WAL from its start instead of growing it (by up
        to ~4 MB before SQLite's own checkpoint)."""
        if not self._low_space:
            return
        try:
            await self._require().execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.debug("outbox %s: checkpoint with little space failed: %s", self.path, exc)

    async def _make_room(self) -> None:
        """After a write failed for lack of space: checkpoint (the WAL's space is reused
        after a complete one) and evict for space in a transaction of its own. Either may
        fail again on a disk that is completely full; the caller then holds its records."""
        self._low_space = True
        await self._checkpoint_if_low()
        try:
            async with self._transaction("evict for space") as db:
                total = self._batch_bytes + self._staged_bytes
                freed = await self._evict(db, total, full=True)
        except OutboxFullError:
            return
        self._batch_bytes -= freed
        await self._checkpoint_if_low()

    @_serialized
    async def append(self, records: Records, now_ms: int, checkpoint: bytes | None = None) -> None:
        """Stage ``records`` and (if given) replace the stored checkpoint, in one transaction.

        Raises a protocol.ProtocolError if a record could never be sent (a bug upstream);
        nothing is stored then. Raises OutboxError if the file cannot be written, and its
        subclass OutboxFullError if the disk is full even after evicting for space: the
        caller still has the records and may try again later.
        """
        rows = [
            (lane, now_ms, first, last, count, len(blob), blob)
            for lane, body in _lanes(self.policy, records).items()
            for blob, first, last, count in _chunks(self.policy, body)
        ]
        if not rows and checkpoint is None:
            return
        try:
            await self._append_rows(rows, records.health, checkpoint)
        except OutboxFullError:
            await self._make_room()
            await self._append_rows(rows, records.health, checkpoint)
        await self._checkpoint_if_low()

    async def _append_rows(
        self,
        rows: list[tuple[str, int, int, int, int, int, bytes]],
        health: Sequence[Health],
        checkpoint: bytes | None,
    ) -> None:
        added = sum(len(row[6]) for row in rows)
        async with self._transaction("append records") as db:
            await db.executemany(
                "INSERT INTO staged(lane, staged_ms, first_ms, last_ms, n_records, size, body)"
                " VALUES(?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            if checkpoint is not None:
                await db.execute(_UPSERT_META, (META_CHECKPOINT, bytes(checkpoint)))
            if health:
                await db.execute(_UPSERT_META, (META_HEALTH, _health_json(health)))
            freed = await self._evict(db, self._batch_bytes + self._staged_bytes + added)
        self._staged_bytes += added
        self._batch_bytes -= freed

    @_serialized
    async def load_checkpoint(self) -> bytes | None:
        with _sqlite_errors(self.path, "load the checkpoint"):
            value = await _scalar(
                self._require(), "SELECT value FROM meta WHERE key=?", (META_CHECKPOINT,)
            )
        return value if value is None else bytes(value)  # type: ignore[call-overload]

    async def _lane_groups(
        self, db: aiosqlite.Connection, lane: str, now_ms: int, force: bool
    ) -> list[list[int]]:
        """The staged row ids of ``lane`` to close now, grouped into batches."""
        async with db.execute(
            "SELECT id, staged_ms, n_records, size FROM staged WHERE lane=? ORDER BY id", (lane,)
        ) as cursor:
            rows = list(await cursor.fetchall())
        if not rows:
            return []
        chunks = [Chunk(int(r[0]), int(r[2]), int(r[3])) for r in rows]
        oldest = min(int(r[1]) for r in rows)
        count = sum(c.count for c in chunks)
        nbytes = sum(c.nbytes for c in chunks)
        if not (
            force
            or should_close(
                self.policy,
                lane,
                oldest_staged_ms=oldest,
                count=count,
                nbytes=nbytes,
                now_ms=now_ms,
            )
        ):
            return []
        groups = plan_batches(self.policy, chunks)
        if force or now_ms - oldest >= self.policy.max_age_ms(lane):
            return groups
        # Closed for size: a last, partly filled group keeps collecting until it is due.
        sizes = {c.ident: c for c in chunks}
        last = groups[-1]
        full = (
            sum(sizes[i].count for i in last) >= self.policy.max_records
            or sum(sizes[i].nbytes for i in last) >= self.policy.max_bytes
        )
        return groups if full else groups[:-1]

    async def _encode_group(
        self, db: aiosqlite.Connection, ids: list[int], seq: int, now_ms: int
    ) -> list[tuple[bytes, Body]]:
        """Encode staged rows ``ids`` as batches numbered from ``seq``: one batch, or several
        if the wire payload would exceed a protocol limit. A single chunk that cannot be
        encoded at all (a bug) is dropped, counted and logged rather than blocking its lane
        forever."""
        marks = ",".join("?" * len(ids))
        try:
            async with db.execute(
                f"SELECT first_ms, last_ms, body FROM staged WHERE id IN ({marks}) ORDER BY id",
                ids,
            ) as cursor:
                rows = await cursor.fetchall()
            body = _merge([_decode_chunk(bytes(r[2]), int(r[0]), int(r[1])) for r in rows])
            batch = Batch.build(
                fleet_id=self.fleet_id,
                vehicle_id=self.vehicle_id,
                epoch=self.epoch,
                seq=seq,
                sent_ms=now_ms,
                **body._asdict(),
            )
            return [(encode_batch(batch), body)]
        except ProtocolError as exc:
            if len(ids) == 1:
                await self._drop_invalid(db, ids, exc)
                return []
        middle = len(ids) // 2
        first = await self._encode_group(db, ids[:middle], seq, now_ms)
        second = await self._encode_group(db, ids[middle:], seq + len(first), now_ms)
        return first + second

    @_serialized
    async def close_due_batches(self, now_ms: int, *, force: bool = False) -> int:
        """Close staged records the policy says are due (all of them with ``force``, for a
        shutdown drain) into batches with the next seqs, in one transaction. Returns the
        number of batches created."""
        created = 0
        moved = added = 0
        async with self._transaction("close batches") as db:
            seq = self._next_seq
            for lane in LANES:
                for group in await self._lane_groups(db, lane, now_ms, force):
                    for payload, body in await self._encode_group(db, group, seq, now_ms):
                        span = time_span(body)
                        assert span is not None
                        await db.execute(
                            "INSERT INTO batches(seq, channel, priority, first_ms, last_ms,"
                            " n_records, size, payload) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                            (
                                seq,
                                str(lane),
                                PRIORITY[lane],
                                *span,
                                _n_records(body),
                                len(payload),
                                payload,
                            ),
                        )
                        seq += 1
                        created += 1
                        added += len(payload)
                    moved += await self._delete_staged(db, group)
            if created:
                await db.execute(_UPSERT_META, (META_NEXT_SEQ, seq))
            freed = await self._evict(db, self._batch_bytes + added + self._staged_bytes - moved)
        self._next_seq = seq
        self._staged_bytes -= moved
        self._batch_bytes += added - freed
        await self._checkpoint_if_low()
        return created

    async def _delete_staged(self, db: aiosqlite.Connection, ids: list[int]) -> int:
        marks = ",".join("?" * len(ids))
        size = int(
            str(
                await _scalar(
                    db, f"SELECT COALESCE(SUM(size), 0) FROM staged WHERE id IN ({marks})", ids
                )
            )
        )
        await db.execute(f"DELETE FROM staged WHERE id IN ({marks})", ids)
        return size

    async def _drop_invalid(
        self, db: aiosqlite.Connection, ids: list[int], exc: ProtocolError
    ) -> None:
        marks = ",".join("?" * len(ids))
        count = int(
            str(
                await _scalar(
                    db, f"SELECT COALESCE(SUM(n_records), 0) FROM staged WHERE id IN ({marks})", ids
                )
            )
        )
        await db.execute(_BUMP_COUNTER, (DROPPED_INVALID, count))
        log.error("outbox: dropped %d staged records that cannot be encoded: %s", count, exc)

    @_unmarked_held_back
    @_serialized
    async def due_for_publish(
        self, now_ms: int, *, limit: int, resend_after_ms: int
    ) -> list[StoredBatch]:
        """Batches to publish now: never published, or published at least
        ``resend_after_ms`` ago and still unacknowledged. Urgent events first, then
        health, then bulk; oldest seq first within each."""
        with _sqlite_errors(self.path, "read due batches"):
            async with self._require().execute(
                "SELECT seq, channel, priority, first_ms, last_ms, publish_count, payload"
                " FROM batches WHERE published_ms IS NULL OR published_ms <= ?"
                " ORDER BY priority DESC, seq LIMIT ?",
                (now_ms - resend_after_ms, max(0, limit)),
            ) as cursor:
                rows = await cursor.fetchall()
        return [
            StoredBatch(
                epoch=self.epoch,
                seq=int(r[0]),
                channel=str(r[1]),
                payload=bytes(r[6]),
                priority=int(r[2]),
                first_ms=int(r[3]),
                last_ms=int(r[4]),
                publish_count=int(r[5]),
            )
            for r in rows
        ]

    async def mark_published(self, seqs: Sequence[int], now_ms: int) -> None:
        """Record the broker's PUBACK for ``seqs``: they wait ``resend_after_ms`` for the
        end-to-end ack before they are due again. On a full disk this is remembered in
        memory only (a restart resends them, which the collector deduplicates)."""
        try:
            await self._mark_published(seqs, now_ms)
        except OutboxFullError as exc:
            if not self._unmarked:
                log.warning("%s; publishes are remembered in memory until there is room", exc)
            now = time.monotonic()
            self._unmarked.update((seq, now) for seq in seqs)
            return
        for seq in seqs:
            self._unmarked.pop(seq, None)

    @_serialized
    async def _mark_published(self, seqs: Sequence[int], now_ms: int) -> None:
        if not seqs:
            return
        async with self._transaction("mark batches published") as db:
            await db.executemany(
                "UPDATE batches SET published_ms=?, publish_count=publish_count + 1 WHERE seq=?",
                [(now_ms, seq) for seq in seqs],
            )

    @_skipped_when_full(0)
    @_serialized
    async def acknowledge(self, epoch: int, upto_seq: int) -> int:
        """The collector's end-to-end ack: delete this epoch's batches up to ``upto_seq``.
        An ack for another epoch (an older file) is ignored. Returns the batches deleted."""
        if epoch != self.epoch:
            log.info("outbox: ignoring an ack for epoch %d (ours is %d)", epoch, self.epoch)
            return 0
        # An ack beyond anything issued cannot be ours to believe past what exists.
        upto = min(upto_seq, self._next_seq - 1)
        if upto <= self._acked_seq:
            return 0  # a repeated ack: no write, no fsync
        async with self._transaction("acknowledge batches") as db:
            async with db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM batches WHERE seq <= ?", (upto,)
            ) as cursor:
                row = await cursor.fetchone()
            assert row is not None
            await db.execute("DELETE FROM batches WHERE seq <= ?", (upto,))
            await db.execute(_UPSERT_META, (META_ACKED_SEQ, upto))
        self._acked_seq = upto
        self._batch_bytes -= int(row[1])
        return int(row[0])

    @_serialized
    async def stats(self, now_ms: int) -> OutboxStats:
        db = self._require()
        with _sqlite_errors(self.path, "read statistics"):
            async with db.execute(BATCH_TOTALS_SQL) as cursor:
                batches = await cursor.fetchone()
            async with db.execute(STAGED_TOTALS_SQL) as cursor:
                staged = await cursor.fetchone()
            async with db.execute(COUNTERS_SQL) as cursor:
                counters = {str(k): int(v) for k, v in await cursor.fetchall()}
        assert batches is not None
        assert staged is not None
        firsts = [int(t) for t in (batches[2], staged[2]) if t is not None]
        return OutboxStats(
            epoch=self.epoch,
            next_seq=self._next_seq,
            highest_acked_seq=self._acked_seq,
            pending_batches=int(batches[0]),
            pending_bytes=int(batches[1]),
            unpublished_batches=int(batches[3]),
            staged_records=int(staged[0]),
            staged_bytes=int(staged[1]),
            oldest_pending_age_ms=now_ms - min(firsts) if firsts else None,
            counters=counters,
        )

    @_serialized
    async def close(self) -> None:
        """Close the file; later calls raise OutboxError. Closing twice is harmless."""
        db, self._db = self._db, None
        lock_fd, self._lock_fd = self._lock_fd, None
        try:
            if db is not None:
                with _sqlite_errors(self.path, "close"):
                    await db.close()
        finally:
            if lock_fd is not None:
                os.close(lock_fd)  # releases the flock
