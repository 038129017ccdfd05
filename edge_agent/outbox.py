"""The durable outbox: every record is written here before anything else happens to it.

Records are checked once and staged per lane (urgent events, health, bulk) as small
msgpack chunks of their wire form (``edge_agent.chunks``), joined into wire batches with
``(epoch, seq)`` by the policy in ``edge_agent.batching``, and kept until the collector's
end-to-end ack (``acknowledge``) or eviction deletes them. This module is the storage:
what is decided without the file lives in those two. Each public method is one SQLite
transaction; a write transaction runs whole on the writer's own thread
(``edge_agent.sqlite_thread``), so it costs one hand-off from the event loop, not one per
statement.

Scheduling (a lane's batch age, the resend timer) runs on the *outbox clock*: milliseconds
the outbox has been open, summed over its runs (``_clock_ms``). It is monotonic, so a wall
clock stepped back or forward by a day changes nothing, and it survives restarts because
it continues from the highest value stored (it pauses while the agent is not running).
Wall time only stamps records.

A pair ``(epoch, seq)`` is never issued twice. After an unclean shutdown (no clean-close
marker: killed, power cut) the last commits may be lost if the storage lied about them or
the WAL was damaged; reissuing their seqs with other records would make the collector drop
the new records as duplicates. So new batches then get a new epoch, while batches already
closed are still sent under the epoch they were encoded with. Batches are keyed locally by
a file-wide number (column ``seq``) that keeps counting across epochs; table ``epochs``
maps ranges of it to ``(epoch, wire seq)``, so switching epochs rewrites no batch.

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
import zlib
from collections import Counter
from collections.abc import (
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import aiosqlite

from edge_agent.batching import (
    CAUSE_SPACE,
    DEFAULT_RESERVE_BYTES,
    EVICTION_CAUSE,
    LANES,
    PRIORITY,
    SPACE_EVICTS_BELOW,
    BatchPolicy,
    Candidate,
    Chunk,
    Lost,
    backlog_age_ms,
    choose_victims,
    eviction_counters,
    eviction_need,
    eviction_notices,
    groups_to_close,
    lane_bodies,
    split_on_failure,
)
from edge_agent.chunks import ClosedBody, StagedChunk, encode_chunks, join_chunks
from edge_agent.epochs import local_number, local_span, wire_id
from edge_agent.errors import OutboxError
from edge_agent.free_space import FreeSpaceGauge
from edge_agent.sqlite_thread import SqliteThread
from protocol.body import Body
from protocol.codec import decode_batch, peek_identity
from protocol.errors import ProtocolError
from protocol.ids import is_valid_id
from protocol.records import Event, GnssFix, Health, RawFrame, SignalSeries
from protocol.topics import Channel

log = logging.getLogger(__name__)

# "TXOB" in the database header: a foreign SQLite file (application_id 0 or another value)
# is recognised and never mistaken for an outbox.
APPLICATION_ID: Final = 0x54584F42
SCHEMA_VERSION: Final = 2
BUSY_TIMEOUT_MS: Final = 5_000

# Keys of the ``meta`` table.
META_EPOCH: Final = "epoch"  # decimal text: a uint64 does not fit SQLite's signed INTEGER
META_NEXT_SEQ: Final = "next_seq"
META_ACKED_SEQ: Final = "acked_seq"
META_CHECKPOINT: Final = "checkpoint"
META_HEALTH: Final = "latest_health"  # JSON {"time_ms": ..., "values": {...}}
# Written by a clean close, removed on open: its absence means the last run ended unclean.
META_CLEAN_CLOSE: Final = "clean_close"
# JSON {"time_ms", "acked_during_drain", "pending_batches", "connected"}: how the last
# clean stop's drain ended, for ``status`` after the agent is gone.
META_LAST_STOP: Final = "last_stop"

# Counters besides the eviction causes of edge_agent.batching.
EVICTED_RECORDS: Final = "evicted_records"
DROPPED_INVALID: Final = "dropped_invalid"
# Records of batches whose stored bytes no longer match their checksum: removed unsent.
DROPPED_CORRUPT: Final = "dropped_corrupt"
# Opens that found the meta values damaged or inconsistent with the stored batches.
META_REPAIRS: Final = "meta_repairs"
# New epochs started so that no seq is ever issued twice (unclean shutdown, damaged meta).
EPOCH_RESTARTS: Final = "epoch_restarts"
# The counters above that the health snapshot reports.
INTEGRITY_COUNTERS: Final = (DROPPED_CORRUPT, META_REPAIRS, EPOCH_RESTARTS)

_MAX_SEQ: Final = (1 << 63) - 1  # SQLite INTEGER; far beyond any real outbox

_SCHEMA: Final = (
    # Byte sizes are stored so the cap is enforced without reading blobs. Blobs are the
    # last column: scans reading only the small columns never touch their overflow pages.
    # staged_ms: wall clock, a stamp only; staged_mono: outbox clock, for the batch age.
    """CREATE TABLE staged(
        id INTEGER PRIMARY KEY,
        lane TEXT NOT NULL,
        staged_ms INTEGER NOT NULL,
        staged_mono INTEGER NOT NULL,
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        n_records INTEGER NOT NULL,
        size INTEGER NOT NULL,
        body BLOB NOT NULL)""",
    # seq: the file-wide local number (see ``epochs``); published_mono: outbox clock of
    # the last PUBACK; crc: zlib.crc32 of the payload at close (NULL: closed by schema 1);
    # notice: 1 when the payload is an eviction notice standing in for lost records.
    """CREATE TABLE batches(
        seq INTEGER PRIMARY KEY,
        channel TEXT NOT NULL,
        priority INTEGER NOT NULL,
        first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        n_records INTEGER NOT NULL,
        size INTEGER NOT NULL,
        published_mono INTEGER,
        publish_count INTEGER NOT NULL DEFAULT 0,
        crc INTEGER,
        notice INTEGER NOT NULL DEFAULT 0,
        payload BLOB NOT NULL)""",
    # Batches with a local seq from first_local up to the next row's first_local belong to
    # this epoch; their wire seq is seq - first_local + 1. The last row is the current one.
    """CREATE TABLE epochs(
        first_local INTEGER PRIMARY KEY,
        epoch TEXT NOT NULL)""",
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
    " COALESCE(SUM(published_mono IS NULL), 0) FROM batches"
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

    def body(self) -> Body:
        return Body(self.signals, self.events, self.gnss, self.frames, self.health)


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
    oldest_pending_age_ms: int  # batching.backlog_age_ms: 0 when no batch is pending
    counters: Mapping[str, int] = field(default_factory=dict)  # evictions and drops by cause


class _CorruptError(Exception):
    """The file at the outbox path is not a usable outbox; the reason is the message."""


class OutboxFullError(OutboxError):
    """A write failed because the disk is full (SQLITE_FULL); it stored nothing."""


# An outbox over its cap evicts on every append: one warning per condition this often,
# summing up the evictions since the last one.
EVICTION_LOG_S: Final = 60.0


@dataclass
class _Evictions:
    """The evictions of one condition (cap or disk space) not yet in a warning."""

    times: int = 0
    batches: int = 0
    nbytes: int = 0
    first_seq: int = 0
    last_seq: int = 0
    by_cause: Counter[str] = field(default_factory=Counter)
    reason: str = ""
    logged_at: float | None = None  # monotonic time of the last warning

    def add(
        self, seqs: Sequence[int], nbytes: int, by_cause: Mapping[str, int], reason: str
    ) -> None:
        self.first_seq = min(seqs) if not self.times else min(self.first_seq, *seqs)
        self.last_seq = max(self.last_seq, *seqs)
        self.times += 1
        self.batches += len(seqs)
        self.nbytes += nbytes
        self.by_cause.update(by_cause)
        self.reason = reason

    def due(self, now: float) -> bool:
        return self.times > 0 and (self.logged_at is None or now - self.logged_at >= EVICTION_LOG_S)

    def flush(self, path: Path, now: float) -> None:
        what = "1 eviction" if self.times == 1 else f"{self.times} evictions"
        since = "" if self.logged_at is None else f" in the last {now - self.logged_at:.0f} s"
        log.warning(
            "outbox %s: evicted %d batches (%d bytes, seqs %d..%d) in %s%s: %s; %s",
            path,
            self.batches,
            self.nbytes,
            self.first_seq,
            self.last_seq,
            what,
            since,
            self.reason,
            dict(sorted(self.by_cause.items())),
        )
        self.times = self.batches = self.nbytes = self.first_seq = self.last_seq = 0
        self.by_cause.clear()
        self.logged_at = now


def filesystem_free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged process may still write on the filesystem holding ``path``
    (the agent runs as its own user, so root's reserved blocks do not count)."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def filesystem_size_bytes(path: Path) -> int | None:
    """Size of the filesystem holding ``path``."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return None
    return st.f_blocks * st.f_frsize


def effective_reserve(reserve_bytes: int, filesystem_bytes: int | None) -> int:
    """The free-space reserve, at most half the filesystem: a reserve larger than a small
    partition would keep the outbox below it for ever, evicting everything but events
    even with the disk empty."""
    if filesystem_bytes is None:
        return reserve_bytes
    return min(reserve_bytes, filesystem_bytes // 2)


def _parse_int(value: object, low: int, high: int) -> int | None:
    """A stored integer (SQLite integer or decimal text) within ``[low, high]``, else None:
    a damaged meta value must never be used as a seq or an epoch."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
    else:
        return None
    return number if low <= number <= high else None


def _intact(payload: bytes, crc: object, epoch: int, seq: int) -> bool:
    """Whether a stored batch's bytes are what was closed: its checksum matches, or (closed
    by schema 1, no checksum) it decodes whole and names its own epoch and seq."""
    if crc is not None:
        return zlib.crc32(payload) == crc
    try:
        header = decode_batch(payload).header
    except ProtocolError:
        return False
    return (header.epoch, header.seq) == (epoch, seq)


def _payload_epoch(db: sqlite3.Connection, first: int, end: int) -> int | None:
    """The epoch that the first intact batch of local seqs ``[first, end)`` names, if any."""
    rows = db.execute(
        "SELECT seq, crc, payload FROM batches WHERE seq >= ? AND seq < ? ORDER BY seq LIMIT 8",
        (first, end),
    ).fetchall()
    for local, crc, blob in rows:
        payload = bytes(blob)
        try:
            identity = peek_identity(payload)
        except ProtocolError:
            continue
        wire_seq = int(local) - first + 1
        if identity.seq == wire_seq and _intact(payload, crc, identity.epoch, wire_seq):
            return identity.epoch
    return None


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
    # execute_fetchall: one hand-off to the connection's thread (execute, fetch and the
    # cursor's close are one each).
    rows = list(await db.execute_fetchall(sql, params))
    return rows[0][0] if rows else None


def _value(db: sqlite3.Connection, sql: str, params: Sequence[object] = ()) -> object:
    """The first column of the first row, on the writer's connection (its thread)."""
    row = db.execute(sql, params).fetchone()
    return None if row is None else row[0]


async def _create(db: aiosqlite.Connection) -> None:
    await db.execute("BEGIN IMMEDIATE")
    for statement in _SCHEMA:
        await db.execute(statement)
    # Header pragmas are transactional: a crash here leaves an empty file, created again.
    await db.execute(f"PRAGMA application_id={APPLICATION_ID}")
    await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    epoch = _new_epoch()
    await db.executemany(
        _UPSERT_META,
        [
            (META_EPOCH, str(epoch)),
            (META_NEXT_SEQ, 1),
            (META_ACKED_SEQ, 0),
            (META_CLEAN_CLOSE, 1),  # nothing issued yet: nothing can have been lost
        ],
    )
    await db.execute("INSERT INTO epochs(first_local, epoch) VALUES(1, ?)", (str(epoch),))
    await db.execute("COMMIT")
    log.info("outbox created with epoch %d", epoch)


def _new_epoch() -> int:
    return secrets.randbits(64) or 1


async def _migrate_v1(db: aiosqlite.Connection) -> None:
    """Schema 1 to 2 in one transaction, without copying any batch: the batches table
    gains a checksum column (NULL for the batches closed before, checked by decoding) and
    its publish time becomes the outbox clock (old wall stamps are fine as a start: the
    clock continues from the highest); the small staged table is rebuilt with its clock
    column; the one epoch so far starts at local seq 1, where schema 1 started it."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.execute("ALTER TABLE batches RENAME COLUMN published_ms TO published_mono")
        await db.execute("ALTER TABLE batches ADD COLUMN crc INTEGER")
        await db.execute("ALTER TABLE batches ADD COLUMN notice INTEGER NOT NULL DEFAULT 0")
        await db.execute("ALTER TABLE staged RENAME TO staged_v1")
        await db.execute(_SCHEMA[0])
        await db.execute(
            "INSERT INTO staged(id, lane, staged_ms, staged_mono, first_ms, last_ms, n_records,"
            " size, body) SELECT id, lane, staged_ms,"
            " (SELECT COALESCE(MAX(published_mono), 0) FROM batches),"
            " first_ms, last_ms, n_records, size, body FROM staged_v1"
        )
        await db.execute("DROP TABLE staged_v1")
        await db.execute(_SCHEMA[2])
        epoch = await _scalar(db, "SELECT value FROM meta WHERE key=?", (META_EPOCH,))
        await db.execute("INSERT INTO epochs(first_local, epoch) VALUES(1, ?)", (str(epoch),))
        await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    log.warning("outbox migrated from schema 1 to %d", SCHEMA_VERSION)


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
        if version == 1:
            await _migrate_v1(db)
            version = SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            raise _CorruptError(f"schema version {version}, expected {SCHEMA_VERSION}")
        async with db.execute("PRAGMA quick_check") as cursor:
            problems = [str(row[0]) for row in await cursor.fetchall()]
        if problems != ["ok"]:
            raise _CorruptError("quick_check: " + "; ".join(problems[:5]))
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


def _setup_writer(db: sqlite3.Connection) -> None:
    """The writer's connection (``Outbox._writer``): the settings of the reader's
    (``_connect``), which has already checked, created or migrated the file."""
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    for pragma in _PRAGMAS:
        db.execute(pragma)


def _mark_clean_close(db: sqlite3.Connection) -> None:
    # Every method is its own committed transaction: the file is consistent here, and
    # the next open may continue this epoch.
    db.execute(_UPSERT_META, (META_CLEAN_CLOSE, 1))


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
    async def held_back(self: Outbox, *, limit: int, resend_after_ms: int) -> list[StoredBatch]:
        due = await method(self, limit=limit, resend_after_ms=resend_after_ms)
        if not self._unmarked:
            return due
        now = self._clock_ms()
        for key in [k for k, at in self._unmarked.items() if now - at >= resend_after_ms]:
            del self._unmarked[key]
        return [b for b in due if (b.epoch, b.seq) not in self._unmarked]

    return held_back


class Outbox:
    """The agent's SQLite outbox. Safe for the tasks of one process; a second process
    opening the same file is refused (see ``_take_lock``).

    Two connections to the file, both used under the outbox's lock, one call at a time:
    reads go through aiosqlite (``_db``, one hand-off to its thread each), and each write
    transaction runs whole, BEGIN to COMMIT, as one synchronous call on the writer's
    thread (``_writer``, edge_agent.sqlite_thread): one hand-off however many statements
    it has. In WAL mode a read sees every transaction committed before it. Methods named
    ``_..._tx`` and those taking a ``sqlite3.Connection`` run on the writer's thread.
    """

    def __init__(
        self,
        db: aiosqlite.Connection,
        writer: SqliteThread,
        path: Path,
        *,
        fleet_id: str,
        vehicle_id: str,
        max_bytes: int,
        policy: BatchPolicy,
        epoch: int,
    ) -> None:
        self._db: aiosqlite.Connection | None = db
        self._writer: SqliteThread | None = writer
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
        # (first local seq, epoch) per epoch still holding batches, oldest first; the last
        # is the current epoch (see the ``epochs`` table).
        self._epochs: list[tuple[int, int]] = [(1, epoch)]
        self._monotonic: Callable[[], float] = time.monotonic
        self._opened = 0.0  # monotonic time of the open
        self._clock_base = 0  # the outbox clock at the open
        self.reserve_bytes = DEFAULT_RESERVE_BYTES
        # Writes that failed because the disk was full, since open (for health).
        self.space_failures = 0
        # Free space was below the reserve at the last write: checkpoint after each commit
        # so the WAL is reused from its start instead of growing.
        self._low_space = False
        # Free space on the disk, read now and then (edge_agent.free_space).
        self._space = FreeSpaceGauge(
            read=functools.partial(filesystem_free_bytes, path),
            clock=time.monotonic,  # the outbox's monotonic clock, set with it
        )
        # Seqs whose PUBACK could not be recorded for lack of space -> monotonic time.
        self._unmarked: dict[tuple[int, int], int] = {}  # (epoch, seq) -> outbox clock
        # Evictions not yet in a warning, by condition (see EVICTION_LOG_S).
        self._evictions: dict[str, _Evictions] = {}
        # After a close: milliseconds until the records it left staged are due to close
        # (None: nothing left staged), so a closer can sleep until then.
        self.next_close_in_ms: int | None = None

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        fleet_id: str,
        vehicle_id: str,
        max_bytes: int = 256 << 20,
        policy: BatchPolicy | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        reserve_bytes: int = DEFAULT_RESERVE_BYTES,
    ) -> Outbox:
        """Open or create the outbox at ``path``. A corrupt or foreign file is moved aside
        (logged as an error) and a new outbox with a new epoch is started. The meta values
        are checked against the batches present, and new batches get a new epoch when the
        last run did not close cleanly or the meta values were damaged (logged, counted).
        ``monotonic`` is the clock of the outbox clock (injected by tests). Batches are
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
                monotonic=monotonic,
            )
        except BaseException:
            os.close(lock_fd)
            raise
        outbox.reserve_bytes = effective_reserve(reserve_bytes, filesystem_size_bytes(path))
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
        monotonic: Callable[[], float],
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
            writer: SqliteThread | None = None
            try:
                writer = await SqliteThread.open(path, _setup_writer)
                outbox = cls(
                    db,
                    writer,
                    path,
                    fleet_id=fleet_id,
                    vehicle_id=vehicle_id,
                    max_bytes=max_bytes,
                    policy=policy,
                    epoch=0,  # read and checked by _open_checks
                )
                outbox._lock_fd = lock_fd
                outbox._monotonic = outbox._space.clock = monotonic
                outbox._opened = monotonic()
                await writer.run(outbox._open_checks_tx)
                await writer.run(outbox._load_state)
            except BaseException:
                if writer is not None:
                    await writer.close()
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

    async def _run(self, work: Callable[[sqlite3.Connection], _R]) -> _R:
        """``work`` on the writer's thread (one hand-off)."""
        if self._writer is None:
            raise OutboxError(f"outbox {self.path} is closed")
        return await self._writer.run(work)

    def _clock_ms(self) -> int:
        """The outbox clock: monotonic, continuing across restarts from the highest value
        stored. Batch age and the resend timer use it; the wall clock never decides."""
        return self._clock_base + round((self._monotonic() - self._opened) * 1000)

    @property
    def _first_local(self) -> int:
        return self._epochs[-1][0]

    def _wire(self, local: int) -> tuple[int, int]:
        return wire_id(self._epochs, local)

    def _span(self, epoch: int) -> tuple[int, int] | None:
        return local_span(self._epochs, self._next_seq, epoch)

    def _local(self, epoch: int, seq: int) -> int | None:
        return local_number(self._epochs, self._next_seq, epoch, seq)

    def _open_checks_tx(self, db: sqlite3.Connection) -> None:
        """Check the meta values against the batches present and start a new epoch for new
        batches when the seq history cannot be trusted, in one transaction committed
        before any seq is issued. Sets the epoch(s) and the outbox clock."""
        self._transact(db, "check the outbox on open", self._open_checks)

    def _open_checks(self, db: sqlite3.Connection) -> None:
        meta = {str(k): v for k, v in db.execute("SELECT key, value FROM meta").fetchall()}
        problems = self._check_epochs(db)
        current_first, current = self._epochs[-1]
        stored_epoch = _parse_int(meta.get(META_EPOCH), 1, (1 << 64) - 1)
        next_seq = _parse_int(meta.get(META_NEXT_SEQ), 1, _MAX_SEQ)
        acked = _parse_int(meta.get(META_ACKED_SEQ), 0, _MAX_SEQ)
        top = _value(db, "SELECT MAX(seq) FROM batches WHERE seq >= ?", (current_first,))
        highest = 0 if top is None else int(str(top)) - current_first + 1
        if stored_epoch != current:
            problems.append(f"epoch {meta.get(META_EPOCH)!r}, the batches say {current}")
        if next_seq is None or acked is None:
            problems.append(
                f"next_seq {meta.get(META_NEXT_SEQ)!r} or acked_seq "
                f"{meta.get(META_ACKED_SEQ)!r} unreadable"
            )
        elif next_seq <= max(highest, acked):
            problems.append(
                f"next_seq {next_seq} not above the highest stored seq {highest} "
                f"and the acknowledged seq {acked}"
            )
        self.epoch = current
        self._next_seq = next_seq or 1
        self._acked_seq = acked or 0
        if problems:
            log.error(
                "OUTBOX META DAMAGED: %s: %s; new batches get a new epoch, stored batches "
                "keep theirs",
                self.path,
                "; ".join(problems),
            )
            db.execute(_BUMP_COUNTER, (META_REPAIRS, 1))
            self._start_epoch(db, "damaged meta values")
        elif META_CLEAN_CLOSE not in meta:
            self._start_epoch(db, "the last run did not close cleanly")
        db.execute("DELETE FROM meta WHERE key=?", (META_CLEAN_CLOSE,))
        self._prune_epochs(db)
        base = _value(
            db,
            "SELECT MAX(m) FROM (SELECT MAX(published_mono) AS m FROM batches"
            " UNION ALL SELECT MAX(staged_mono) FROM staged)",
        )
        self._clock_base = 0 if base is None else int(str(base))

    def _check_epochs(self, db: sqlite3.Connection) -> list[str]:
        """Load the epochs table, each epoch checked against the payload of its first
        intact batch (a payload is what the collector acknowledges); repairs the table from
        the payloads and returns what was wrong."""
        rows = [
            (int(r[0]), _parse_int(r[1], 1, (1 << 64) - 1))
            for r in db.execute("SELECT first_local, epoch FROM epochs ORDER BY first_local")
        ]
        problems: list[str] = []
        if not rows:
            problems.append("no epochs stored")
            rows = [(1, None)]
        checked: list[tuple[int, int]] = []
        for i, (first, stored) in enumerate(rows):
            end = rows[i + 1][0] if i + 1 < len(rows) else _MAX_SEQ
            said = _payload_epoch(db, first, end)
            if said is None and stored is None:
                # No readable epoch and no batch naming one: nothing of it left to send.
                problems.append(f"epoch of local seqs {first}.. unreadable")
                db.execute("DELETE FROM epochs WHERE first_local=?", (first,))
                continue
            if said is not None and said != stored:
                problems.append(
                    f"epoch of local seqs {first}.. is {stored}, the batches say {said}"
                )
                db.execute(
                    "INSERT INTO epochs(first_local, epoch) VALUES(?, ?) ON CONFLICT(first_local)"
                    " DO UPDATE SET epoch=excluded.epoch",
                    (first, str(said)),
                )
            epoch = said if said is not None else stored
            assert epoch is not None
            checked.append((first, epoch))
        if not checked:
            # Not even the current epoch is known, and no batch names one: a fresh epoch
            # is certain never to collide with anything sent before.
            epoch = _new_epoch()
            first = rows[-1][0]
            db.execute(
                "INSERT INTO epochs(first_local, epoch) VALUES(?, ?) ON CONFLICT(first_local)"
                " DO UPDATE SET epoch=excluded.epoch",
                (first, str(epoch)),
            )
            checked.append((first, epoch))
        self._epochs = checked
        return problems

    def _start_epoch(self, db: sqlite3.Connection, reason: str) -> None:
        """New batches get a new epoch from seq 1; stored ones keep theirs."""
        top = _value(db, "SELECT MAX(seq) FROM batches")
        first = max(0 if top is None else int(str(top)), self._first_local) + 1
        old, epoch = self.epoch, _new_epoch()
        db.execute("INSERT INTO epochs(first_local, epoch) VALUES(?, ?)", (first, str(epoch)))
        db.executemany(
            _UPSERT_META, [(META_EPOCH, str(epoch)), (META_NEXT_SEQ, 1), (META_ACKED_SEQ, 0)]
        )
        db.execute(_BUMP_COUNTER, (EPOCH_RESTARTS, 1))
        self._epochs.append((first, epoch))
        self.epoch, self._next_seq, self._acked_seq = epoch, 1, 0
        log.warning(
            "outbox %s: %s; new batches get epoch %d (was %d, its seqs are never reused)",
            self.path,
            reason,
            epoch,
            old,
        )

    def _prune_epochs(self, db: sqlite3.Connection) -> None:
        """Forget earlier epochs that hold no batch any more."""
        keep: list[tuple[int, int]] = []
        for i, (first, epoch) in enumerate(self._epochs[:-1]):
            end = self._epochs[i + 1][0]
            held = _value(
                db, "SELECT 1 FROM batches WHERE seq >= ? AND seq < ? LIMIT 1", (first, end)
            )
            if held is None:
                db.execute("DELETE FROM epochs WHERE first_local=?", (first,))
            else:
                keep.append((first, epoch))
        self._epochs = [*keep, self._epochs[-1]]

    def _load_state(self, db: sqlite3.Connection) -> None:
        meta = {
            str(k): int(v)
            for k, v in db.execute(
                "SELECT key, value FROM meta WHERE key IN (?, ?)", (META_NEXT_SEQ, META_ACKED_SEQ)
            )
        }
        self._next_seq = meta[META_NEXT_SEQ]
        self._acked_seq = meta[META_ACKED_SEQ]
        self._batch_bytes = int(str(_value(db, "SELECT COALESCE(SUM(size), 0) FROM batches")))
        self._staged_bytes = int(str(_value(db, "SELECT COALESCE(SUM(size), 0) FROM staged")))

    def _transact(
        self, db: sqlite3.Connection, what: str, body: Callable[[sqlite3.Connection], _R]
    ) -> _R:
        """One write transaction: ``body`` between BEGIN IMMEDIATE and COMMIT, on the
        writer's thread. On any failure it is rolled back and the in-memory totals are
        reloaded from the file, so memory never runs ahead of the disk."""
        with _sqlite_errors(self.path, what):
            db.execute("BEGIN IMMEDIATE")
            try:
                result = body(db)
                db.execute("COMMIT")
            except BaseException as exc:
                if isinstance(exc, sqlite3.Error) and _is_disk_full(exc):
                    self.space_failures += 1
                try:
                    # SQLite itself rolls back after some errors (SQLITE_FULL at COMMIT):
                    # a second ROLLBACK would fail and skip reloading the totals.
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    self._load_state(db)
                except sqlite3.Error:
                    log.exception("outbox %s: rollback after a failed %s failed", self.path, what)
                raise
        return result

    def _reusable_bytes(self, db: sqlite3.Connection) -> int:
        """Free pages inside the database file, as this transaction sees them."""
        pages = _value(db, "PRAGMA freelist_count")
        size = _value(db, "PRAGMA page_size")
        return int(str(pages)) * int(str(size))

    def _stage_notices(
        self, db: sqlite3.Connection, lost: Sequence[tuple[int, int, int, str]]
    ) -> int:
        """Stage eviction notices for the closed batches about to be deleted: ``lost`` is
        (local seq, last record time, records, cause) each. Runs of consecutive seqs of one
        epoch and cause share one notice. Notices travel in the urgent lane, whose batches
        are never evicted for space, and batches carrying one are never evicted at all: the
        collector holds its acks back at a missing seq until a notice or the batch arrives.
        Returns the bytes staged."""
        notices = eviction_notices(
            Lost(*self._wire(local), last_ms, records, cause)
            for local, last_ms, records, cause in lost
        )
        rows = [
            (Channel.EVENT.value, c.first_ms, self._clock_ms(), c.first_ms, c.last_ms, c.count,
             len(c.blob), c.blob)
            for c in encode_chunks(self.policy, Body(events=notices))
        ]  # fmt: skip
        db.executemany(
            "INSERT INTO staged(lane, staged_ms, staged_mono, first_ms, last_ms, n_records,"
            " size, body) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        return sum(row[6] for row in rows)

    def _evict(
        self, db: sqlite3.Connection, total_bytes: int, *, adding: int = 0, full: bool = False
    ) -> tuple[int, int]:
        """Evict batches until ``total_bytes`` fits the cap and, below the free-space
        reserve (or with ``full``: a write failed for space), until the file has room
        inside (``eviction_need``); ``adding`` is what this transaction writes. Returns the
        bytes of batches freed and of the eviction notices staged for them."""
        free = 0 if full else self._space.free_bytes(adding, self.reserve_bytes)
        self._low_space = free is not None and free < self.reserve_bytes
        need = eviction_need(
            stored_bytes=total_bytes,
            max_bytes=self.max_bytes,
            free_bytes=free,
            reserve_bytes=self.reserve_bytes,
            reusable_bytes=self._reusable_bytes(db) if self._low_space else 0,
        )
        if need.nbytes <= 0:
            return 0, 0
        # Notices are never evicted: each stands for a seq the collector must still get.
        rows = db.execute(
            "SELECT priority, seq, size, n_records, last_ms FROM batches WHERE notice = 0"
        ).fetchall()
        records = {int(r[1]): int(r[3]) for r in rows}
        last_ms = {int(r[1]): int(r[4]) for r in rows}
        victims = choose_victims(
            (Candidate(int(r[0]), int(r[1]), int(r[2])) for r in rows),
            need.nbytes,
            below_priority=SPACE_EVICTS_BELOW if need.cause == CAUSE_SPACE else None,
        )
        if not victims:
            return 0, 0
        db.executemany("DELETE FROM batches WHERE seq=?", [(v.seq,) for v in victims])
        lost = [(v.seq, last_ms[v.seq], records[v.seq], EVICTION_CAUSE[v.priority])
                for v in victims]  # fmt: skip
        staged = self._stage_notices(db, lost)
        by_cause = eviction_counters(victims, need.cause)
        by_cause[EVICTED_RECORDS] = sum(records[v.seq] for v in victims)
        db.executemany(_BUMP_COUNTER, list(by_cause.items()))
        freed = sum(v.nbytes for v in victims)
        reason = (
            f"{free} bytes free on its disk, reserve {self.reserve_bytes}"
            if need.cause == CAUSE_SPACE
            else f"over its cap of {self.max_bytes} bytes"
        )
        pending = self._evictions.setdefault(need.cause, _Evictions())
        pending.add([v.seq for v in victims], freed, by_cause, reason)
        if pending.due(self._monotonic()):
            pending.flush(self.path, self._monotonic())
        return freed, staged

    def _checkpoint_if_low(self, db: sqlite3.Connection) -> None:
        """With little free space, copy the WAL into the database after each commit: the
        next transaction then reuses the WAL from its start instead of growing it (by up
        to ~4 MB before SQLite's own checkpoint)."""
        if not self._low_space:
            return
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.debug("outbox %s: checkpoint with little space failed: %s", self.path, exc)

    def _make_room(self, db: sqlite3.Connection) -> None:
        """After a write failed for lack of space: checkpoint (the WAL's space is reused
        after a complete one) and evict for space in a transaction of its own. Either may
        fail again on a disk that is completely full; the caller then holds its records."""
        self._low_space = True
        self._space.forget()
        self._checkpoint_if_low(db)
        try:
            freed, staged = self._transact(
                db,
                "evict for space",
                lambda tx: self._evict(tx, self._batch_bytes + self._staged_bytes, full=True),
            )
        except OutboxFullError:
            return
        self._batch_bytes -= freed
        self._staged_bytes += staged
        self._checkpoint_if_low(db)

    @_serialized
    async def append(self, records: Records, now_ms: int, checkpoint: bytes | None = None) -> None:
        """Stage ``records`` and (if given) replace the stored checkpoint, in one transaction.

        Raises a protocol.ProtocolError if a record could never be sent (a bug upstream);
        nothing is stored then. Raises OutboxError if the file cannot be written, and its
        subclass OutboxFullError if the disk is full even after evicting for space: the
        caller still has the records and may try again later.
        """
        clock = self._clock_ms()
        rows = [
            (lane, now_ms, c.first_ms, c.last_ms, c.count, len(c.blob), c.blob, clock)
            for lane, body in lane_bodies(self.policy, records.body()).items()
            for c in encode_chunks(self.policy, body)
        ]
        if not rows and checkpoint is None:
            return
        await self._run(lambda db: self._append_tx(db, rows, records.health, checkpoint))

    def _append_tx(
        self,
        db: sqlite3.Connection,
        rows: list[tuple[str, int, int, int, int, int, bytes, int]],
        health: Sequence[Health],
        checkpoint: bytes | None,
    ) -> None:
        """``append`` on the writer's thread: with a full disk, make room and try once more."""
        try:
            self._append_rows(db, rows, health, checkpoint)
        except OutboxFullError:
            self._make_room(db)
            self._append_rows(db, rows, health, checkpoint)
        self._checkpoint_if_low(db)

    def _append_rows(
        self,
        db: sqlite3.Connection,
        rows: list[tuple[str, int, int, int, int, int, bytes, int]],
        health: Sequence[Health],
        checkpoint: bytes | None,
    ) -> None:
        added = sum(len(row[6]) for row in rows)

        def body(tx: sqlite3.Connection) -> tuple[int, int]:
            tx.executemany(
                "INSERT INTO staged(lane, staged_ms, first_ms, last_ms, n_records, size, body,"
                " staged_mono) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            if checkpoint is not None:
                tx.execute(_UPSERT_META, (META_CHECKPOINT, bytes(checkpoint)))
            if health:
                tx.execute(_UPSERT_META, (META_HEALTH, _health_json(health)))
            total = self._batch_bytes + self._staged_bytes + added
            return self._evict(tx, total, adding=added)

        freed, staged = self._transact(db, "append records", body)
        self._staged_bytes += added + staged
        self._batch_bytes -= freed

    @_serialized
    async def note_stop(self, values: Mapping[str, object]) -> None:
        """Keep how the last drain ended (a JSON object) for ``status``."""
        text = json.dumps(dict(values))

        def body(tx: sqlite3.Connection) -> None:
            tx.execute(_UPSERT_META, (META_LAST_STOP, text))

        await self._run(lambda db: self._transact(db, "note the stop", body))

    @_serialized
    async def load_checkpoint(self) -> bytes | None:
        with _sqlite_errors(self.path, "load the checkpoint"):
            value = await _scalar(
                self._require(), "SELECT value FROM meta WHERE key=?", (META_CHECKPOINT,)
            )
        return value if value is None else bytes(value)  # type: ignore[call-overload]

    def _lane_groups(
        self, db: sqlite3.Connection, lane: str, clock_ms: int, force: bool
    ) -> tuple[list[list[int]], int | None]:
        """The staged row ids of ``lane`` to close now (``clock_ms``: the outbox clock),
        grouped into batches, and when what stays staged is due (outbox clock; None: the
        lane is left empty)."""
        rows = db.execute(
            "SELECT id, staged_mono, n_records, size FROM staged WHERE lane=? ORDER BY id", (lane,)
        ).fetchall()
        if not rows:
            return [], None
        groups = groups_to_close(
            self.policy,
            lane,
            [Chunk(int(r[0]), int(r[2]), int(r[3])) for r in rows],
            oldest_staged_ms=min(int(r[1]) for r in rows),
            now_ms=clock_ms,
            force=force,
        )
        closing = {ident for group in groups for ident in group}
        left = [int(r[1]) for r in rows if int(r[0]) not in closing]
        return groups, min(left) + self.policy.max_age_ms(lane) if left else None

    def _staged_chunks(
        self, db: sqlite3.Connection, ids: list[int]
    ) -> list[tuple[int, StagedChunk]]:
        marks = ",".join("?" * len(ids))
        rows = db.execute(
            f"SELECT id, body, first_ms, last_ms, n_records FROM staged WHERE id IN ({marks})"
            " ORDER BY id",
            ids,
        ).fetchall()
        return [
            (int(r[0]), StagedChunk(bytes(r[1]), int(r[2]), int(r[3]), int(r[4]))) for r in rows
        ]

    def _close_group(
        self, db: sqlite3.Connection, lane: str, ids: list[int], seq: int, now_ms: int
    ) -> tuple[int, int]:
        """Close staged rows ``ids`` into batches numbered from ``seq``: one batch, or
        several if one would break a protocol limit. A single chunk that cannot be closed
        at all (damaged on disk) is dropped, counted and logged rather than blocking its
        lane forever. Returns the batches created and their bytes."""
        errors: list[ProtocolError] = []

        def attempt(group: Sequence[tuple[int, StagedChunk]]) -> ClosedBody | None:
            try:
                return join_chunks([chunk for _, chunk in group])
            except ProtocolError as exc:
                errors.append(exc)
                return None

        created = added = 0
        for group, closed in split_on_failure(self._staged_chunks(db, ids), attempt):
            if closed is None:
                self._drop_invalid(db, [ident for ident, _ in group], errors[-1])
                continue
            payload = closed.payload(
                fleet_id=self.fleet_id,
                vehicle_id=self.vehicle_id,
                epoch=self.epoch,
                seq=seq + created,
                sent_ms=now_ms,
            )
            db.execute(
                "INSERT INTO batches(seq, channel, priority, first_ms, last_ms,"
                " n_records, size, crc, notice, payload) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self._first_local + seq + created - 1,
                    str(lane),
                    PRIORITY[lane],
                    closed.first_ms,
                    closed.last_ms,
                    closed.counts.total,
                    len(payload),
                    zlib.crc32(payload),
                    closed.notice,
                    payload,
                ),
            )
            created += 1
            added += len(payload)
        return created, added

    @_serialized
    async def close_due_batches(self, now_ms: int, *, force: bool = False) -> int:
        """Close staged records the policy says are due (all of them with ``force``, for a
        shutdown drain) into batches with the next seqs, in one transaction. Returns the
        number of batches created."""
        return await self._run(lambda db: self._close_due_tx(db, now_ms, force))

    def _close_due_tx(self, db: sqlite3.Connection, now_ms: int, force: bool) -> int:
        created = moved = added = 0
        due: list[int] = []  # when the lanes' records left staged are due (outbox clock)

        def body(tx: sqlite3.Connection) -> tuple[int, int, int, int]:
            nonlocal created, moved, added
            clock = self._clock_ms()
            for lane in LANES:
                groups, lane_due = self._lane_groups(tx, lane, clock, force)
                due.extend([] if lane_due is None else [lane_due])
                for group in groups:
                    batches, nbytes = self._close_group(
                        tx, lane, group, self._next_seq + created, now_ms
                    )
                    created += batches
                    added += nbytes
                    moved += self._delete_staged(tx, group)
            seq = self._next_seq + created
            if created:
                tx.execute(_UPSERT_META, (META_NEXT_SEQ, seq))
            total = self._batch_bytes + added + self._staged_bytes - moved
            return (clock, seq, *self._evict(tx, total, adding=added))

        clock, seq, freed, staged = self._transact(db, "close batches", body)
        self._next_seq = seq
        self._staged_bytes += staged - moved
        self._batch_bytes += added - freed
        self.next_close_in_ms = None if not due else max(0, min(due) - clock)
        self._checkpoint_if_low(db)
        return created

    def _delete_staged(self, db: sqlite3.Connection, ids: list[int]) -> int:
        marks = ",".join("?" * len(ids))
        size = int(
            str(_value(db, f"SELECT COALESCE(SUM(size), 0) FROM staged WHERE id IN ({marks})", ids))
        )
        db.execute(f"DELETE FROM staged WHERE id IN ({marks})", ids)
        return size

    def _drop_invalid(self, db: sqlite3.Connection, ids: list[int], exc: ProtocolError) -> None:
        marks = ",".join("?" * len(ids))
        count = int(
            str(
                _value(
                    db, f"SELECT COALESCE(SUM(n_records), 0) FROM staged WHERE id IN ({marks})", ids
                )
            )
        )
        db.execute(_BUMP_COUNTER, (DROPPED_INVALID, count))
        log.error("outbox: dropped %d staged records that cannot be encoded: %s", count, exc)

    @_unmarked_held_back
    @_serialized
    async def due_for_publish(self, *, limit: int, resend_after_ms: int) -> list[StoredBatch]:
        """Batches to publish now: never published, or published at least
        ``resend_after_ms`` ago on the outbox clock and still unacknowledged. Urgent events
        first, then health, then bulk; oldest first within each (earlier epochs first).

        A batch whose bytes no longer match the checksum taken when it was closed is not
        returned but removed, logged and counted (``dropped_corrupt``): published, the
        collector would quarantine it and acknowledge it, and it would be gone unnoticed.
        """
        with _sqlite_errors(self.path, "read due batches"):
            rows = await self._require().execute_fetchall(
                "SELECT seq, channel, priority, first_ms, last_ms, publish_count, payload, crc,"
                " n_records, size FROM batches"
                " WHERE published_mono IS NULL OR published_mono <= ?"
                " ORDER BY priority DESC, seq LIMIT ?",
                (self._clock_ms() - resend_after_ms, max(0, limit)),
            )
        due: list[StoredBatch] = []
        damaged: list[tuple[int, int, int, int, int, int]] = []
        for r in rows:
            epoch, seq = self._wire(int(r[0]))
            payload = bytes(r[6])
            if not _intact(payload, r[7], epoch, seq):
                damaged.append((int(r[0]), epoch, seq, int(r[8]), int(r[9]), int(r[4])))
                continue
            due.append(
                StoredBatch(
                    epoch=epoch,
                    seq=seq,
                    channel=str(r[1]),
                    payload=payload,
                    priority=int(r[2]),
                    first_ms=int(r[3]),
                    last_ms=int(r[4]),
                    publish_count=int(r[5]),
                )
            )
        if damaged:
            await self._drop_damaged(damaged)
        return due

    async def _drop_damaged(self, damaged: Sequence[tuple[int, int, int, int, int, int]]) -> None:
        """Replace batches (local seq, epoch, seq, records, bytes, last record time) whose
        bytes are damaged by eviction notices."""
        records = sum(d[3] for d in damaged)

        def body(tx: sqlite3.Connection) -> int:
            tx.executemany("DELETE FROM batches WHERE seq=?", [(d[0],) for d in damaged])
            staged = self._stage_notices(tx, [(d[0], d[5], d[3], DROPPED_CORRUPT) for d in damaged])
            tx.execute(_BUMP_COUNTER, (DROPPED_CORRUPT, records))
            return staged

        def remove(db: sqlite3.Connection) -> None:
            staged = self._transact(db, "remove damaged batches", body)
            self._batch_bytes -= sum(d[4] for d in damaged)
            self._staged_bytes += staged

        try:
            await self._run(remove)
        except OutboxError as exc:
            log.error("outbox %s: damaged batches stay held back: %s", self.path, exc)
            return
        log.error(
            "OUTBOX BATCHES DAMAGED: %s: %d batch(es) no longer match their checksum and were "
            "replaced by eviction notices, %d records lost: (epoch, seq) %s",
            self.path,
            len(damaged),
            records,
            ", ".join(f"({d[1]}, {d[2]})" for d in damaged),
        )

    @_serialized
    async def unpublished_bytes(self) -> int:
        """Bytes of closed batches the broker has not taken yet: what the link still has to
        carry before a batch published now is followed by all that precede it."""
        with _sqlite_errors(self.path, "read unpublished bytes"):
            value = await _scalar(
                self._require(),
                "SELECT COALESCE(SUM(size), 0) FROM batches WHERE published_mono IS NULL",
            )
        return int(str(value))

    async def mark_published(self, batches: Sequence[tuple[int, int]]) -> None:
        """Record the broker's PUBACK for these ``(epoch, seq)``: they wait
        ``resend_after_ms`` on the outbox clock for the end-to-end ack before they are due
        again. On a full disk this is remembered in memory only (a restart resends them,
        which the collector deduplicates)."""
        try:
            await self._mark_published(batches)
        except OutboxFullError as exc:
            if not self._unmarked:
                log.warning("%s; publishes are remembered in memory until there is room", exc)
            now = self._clock_ms()
            self._unmarked.update((key, now) for key in batches)
            return
        for key in batches:
            self._unmarked.pop(key, None)

    @_serialized
    async def _mark_published(self, batches: Sequence[tuple[int, int]]) -> None:
        keys = [key for key in (self._local(e, s) for e, s in batches) if key is not None]
        if not keys:
            return
        clock = self._clock_ms()

        def body(tx: sqlite3.Connection) -> None:
            tx.executemany(
                "UPDATE batches SET published_mono=?, publish_count=publish_count + 1 WHERE seq=?",
                [(clock, key) for key in keys],
            )

        await self._run(lambda db: self._transact(db, "mark batches published", body))

    @_skipped_when_full(0)
    @_serialized
    async def acknowledge(self, epoch: int, upto_seq: int) -> int:
        """The collector's end-to-end ack: delete the batches of ``epoch`` up to
        ``upto_seq``. Earlier epochs still holding batches are acknowledged the same way;
        an ack for an epoch this outbox does not hold is ignored. Returns the batches
        deleted."""
        span = self._span(epoch)
        if span is None:
            log.info("outbox: ignoring an ack for epoch %d (ours is %d)", epoch, self.epoch)
            return 0
        first, end = span
        current = epoch == self.epoch
        # An ack beyond anything issued cannot be ours to believe past what exists.
        last = min(first + upto_seq - 1, end - 1)
        if current and last - first + 1 <= self._acked_seq:
            return 0  # a repeated ack: no write, no fsync
        where = "FROM batches WHERE seq >= ? AND seq <= ?"
        if not current:
            held = await _scalar(self._require(), f"SELECT 1 {where} LIMIT 1", (first, last))
            if held is None:
                return 0

        def body(tx: sqlite3.Connection) -> tuple[int, int]:
            count, size = tx.execute(
                f"SELECT COUNT(*), COALESCE(SUM(size), 0) {where}", (first, last)
            ).fetchone()
            tx.execute(f"DELETE {where}", (first, last))
            if current:
                tx.execute(_UPSERT_META, (META_ACKED_SEQ, last - first + 1))
            return int(count), int(size)

        def acknowledge(db: sqlite3.Connection) -> int:
            count, size = self._transact(db, "acknowledge batches", body)
            if current:
                self._acked_seq = last - first + 1
            self._batch_bytes -= size
            return count

        return await self._run(acknowledge)

    @_serialized
    async def stats(self, now_ms: int) -> OutboxStats:
        db = self._require()
        with _sqlite_errors(self.path, "read statistics"):
            (batches,) = await db.execute_fetchall(BATCH_TOTALS_SQL)
            (staged,) = await db.execute_fetchall(STAGED_TOTALS_SQL)
            counters = {str(k): int(v) for k, v in await db.execute_fetchall(COUNTERS_SQL)}
        return OutboxStats(
            epoch=self.epoch,
            next_seq=self._next_seq,
            highest_acked_seq=self._acked_seq,
            pending_batches=int(batches[0]),
            pending_bytes=int(batches[1]),
            unpublished_batches=int(batches[3]),
            staged_records=int(staged[0]),
            staged_bytes=int(staged[1]),
            oldest_pending_age_ms=backlog_age_ms(batches[2], now_ms),
            counters=counters,
        )

    @_serialized
    async def close(self) -> None:
        """Close the file; later calls raise OutboxError. Closing twice is harmless."""
        for pending in self._evictions.values():
            if pending.times:  # what the rate limit held back is not lost from the log
                pending.flush(self.path, self._monotonic())
        db, self._db = self._db, None
        writer, self._writer = self._writer, None
        lock_fd, self._lock_fd = self._lock_fd, None
        try:
            with _sqlite_errors(self.path, "close"):
                try:
                    if writer is not None:
                        try:
                            await writer.run(_mark_clean_close)
                        except sqlite3.Error as exc:
                            log.warning("outbox %s: cannot mark a clean close: %s", self.path, exc)
                        await writer.close()
                finally:
                    if db is not None:
                        await db.close()
        finally:
            if lock_fd is not None:
                os.close(lock_fd)  # releases the flock
