"""Read-only view of an outbox file for ``edge-agent status``.

Opens the file with ``mode=ro`` (stdlib sqlite3, no aiosqlite, never writes), so it works
while the daemon runs (WAL readers do not block the writer) and after the daemon died.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

from edge_agent.errors import OutboxError
from edge_agent.outbox import (
    APPLICATION_ID,
    BATCH_TOTALS_SQL,
    BUSY_TIMEOUT_MS,
    COUNTERS_SQL,
    META_ACKED_SEQ,
    META_EPOCH,
    META_HEALTH,
    META_NEXT_SEQ,
    SCHEMA_VERSION,
    STAGED_TOTALS_SQL,
)


def _one(db: sqlite3.Connection, sql: str) -> tuple[object, ...]:
    row = db.execute(sql).fetchone()
    assert row is not None
    return tuple(row)


def _int(value: object) -> int:
    return int(str(value))


def _query(db: sqlite3.Connection, path: Path, now_ms: int) -> dict[str, object]:
    app_id, version = _one(db, "PRAGMA application_id")[0], _one(db, "PRAGMA user_version")[0]
    if app_id != APPLICATION_ID or version != SCHEMA_VERSION:
        raise OutboxError(
            f"{path} is not an outbox of this agent (application_id {app_id}, "
            f"user_version {version})"
        )
    meta = {str(k): v for k, v in db.execute("SELECT key, value FROM meta")}
    batches = _one(db, BATCH_TOTALS_SQL)
    staged = _one(db, STAGED_TOTALS_SQL)
    counters = {str(k): _int(v) for k, v in db.execute(COUNTERS_SQL)}
    firsts = [_int(t) for t in (batches[2], staged[2]) if t is not None]
    health = meta.get(META_HEALTH)
    return {
        "path": str(path),
        "epoch": _int(meta[META_EPOCH]),
        "next_seq": _int(meta[META_NEXT_SEQ]),
        "highest_acked_seq": _int(meta[META_ACKED_SEQ]),
        "pending_batches": _int(batches[0]),
        "pending_bytes": _int(batches[1]),
        "unpublished_batches": _int(batches[3]),
        "staged_records": _int(staged[0]),
        "staged_bytes": _int(staged[1]),
        "oldest_pending_age_ms": now_ms - min(firsts) if firsts else None,
        "dropped": counters,
        "health": None if health is None else json.loads(str(health)),
    }


def read_status(path: Path, now_ms: int) -> dict[str, object]:
    """The outbox's state as a JSON-able dict: pending batches and bytes, staged records,
    age of the oldest pending record, highest acknowledged seq, drop counters by cause,
    epoch and the latest health snapshot (or None). Raises OutboxError if the file is
    missing, not an outbox, or unreadable."""
    if not path.is_file():
        raise OutboxError(f"no outbox file at {path}")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)) as db:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # One read transaction: all figures come from the same snapshot.
            db.execute("BEGIN")
            try:
                return _query(db, path, now_ms)
            finally:
                db.rollback()
    except (sqlite3.Error, KeyError, ValueError) as exc:
        raise OutboxError(f"cannot read outbox status from {path}: {exc}") from exc
