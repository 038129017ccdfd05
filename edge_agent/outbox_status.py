"""Read-only view of an outbox file for ``edge-agent status``.

Opens the file with ``mode=ro`` (stdlib sqlite3, no aiosqlite, never writes), so it works
while the daemon runs (WAL readers do not block the writer) and after the daemon died.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import Final
from urllib.parse import quote

from edge_agent.batching import backlog_age_ms
from edge_agent.errors import OutboxError
from edge_agent.outbox import (
    APPLICATION_ID,
    BATCH_TOTALS_SQL,
    BUSY_TIMEOUT_MS,
    COUNTERS_SQL,
    META_ACKED_SEQ,
    META_EPOCH,
    META_HEALTH,
    META_LAST_STOP,
    META_NEXT_SEQ,
    SCHEMA_VERSION,
    STAGED_TOTALS_SQL,
    effective_reserve,
    filesystem_free_bytes,
    filesystem_size_bytes,
)
from protocol.contracts import (
    CAMERA_FAILSAFE_KEY,
    CAMERA_TAMPER_KEY,
    CLOCK_INVALID,
    DISK_FREE_BYTES,
    DISK_FULL,
    DISK_RESERVE_BYTES,
    GNSS_MODE,
    HEALTH_INTERVAL_S,
    OUTBOX_DROPPED_HELD,
    OUTBOX_HELD_RECORDS,
    OUTBOX_WRITE_FAILURES,
    UPLINK_CONNECTED,
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
    health = meta.get(META_HEALTH)
    last_stop = meta.get(META_LAST_STOP)
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
        "oldest_pending_age_ms": backlog_age_ms(
            None if batches[2] is None else _int(batches[2]), now_ms
        ),
        "dropped": counters,
        "health": None if health is None else json.loads(str(health)),
        "last_stop": None if last_stop is None else json.loads(str(last_stop)),
    }


def read_status(path: Path, now_ms: int, reserve_bytes: int | None = None) -> dict[str, object]:
    """The outbox's state as a JSON-able dict: pending batches and bytes, staged records,
    age of the oldest pending record, highest acknowledged seq, drop counters by cause,
    epoch, the latest health snapshot (or None), how the last clean stop's drain ended
    (``last_stop``: acked_during_drain, pending_batches, connected, time_ms; or None);
    and, measured now, the free bytes on the outbox's filesystem with the configured
    reserve. Raises OutboxError if the file is missing, not an outbox, or unreadable."""
    if not path.is_file():
        raise OutboxError(f"no outbox file at {path}")
    report = _read(path, now_ms)
    report[DISK_FREE_BYTES] = filesystem_free_bytes(path)
    report[DISK_RESERVE_BYTES] = (
        None
        if reserve_bytes is None
        else effective_reserve(reserve_bytes, filesystem_size_bytes(path))
    )
    return report


def _read(path: Path, now_ms: int) -> dict[str, object]:
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


# -- the technician's view (edge-agent status --human) ------------------------------------

# A backlog: more batches than about ten minutes of normal traffic, or data this old.
BACKLOG_BATCHES = 60
BACKLOG_AGE_MS = 5 * 60_000
# A snapshot older than this many health intervals means the agent is not running.
STALE_INTERVALS = 3
_MODES = {0: "unknown", 1: "no fix", 2: "2D fix", 3: "3D fix"}


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def human_bytes(n: object) -> str:
    """Decimal units, as disk and data plans count: ``1.2 MB`` is 1,200,000 bytes."""
    value = _num(n)
    if value is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def human_duration_ms(ms: object) -> str:
    value = _num(ms)
    if value is None:
        return "-"
    if abs(value) < 1000:
        return f"{value:.0f} ms"
    s = value / 1000
    if abs(s) < 120:
        return f"{s:.0f} s"
    if abs(s) < 7200:
        return f"{s / 60:.0f} min"
    if abs(s) < 172_800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


# Snapshot flags that are a problem at the given value, worst first. The clock: records are
# stamped with it, so their times are wrong until it is set.
_FLAGS: Final = (
    (CAMERA_FAILSAFE_KEY, True, "CAMERA FAILSAFE"),
    (CAMERA_TAMPER_KEY, True, "CAMERA TAMPER"),
    (UPLINK_CONNECTED, False, "OFFLINE"),
    (CLOCK_INVALID, True, "CLOCK WRONG"),
)


def headline(report: Mapping[str, object], now_ms: int) -> list[str]:
    """What is wrong, worst first; ``["OK"]`` when nothing is."""
    health = report.get("health")
    values: Mapping[str, object] = {}
    if isinstance(health, Mapping):
        values = health.get("values") or {}
    problems = ["DISK FULL"] if disk_full(report, values) else []
    problems += [label for key, bad, label in _FLAGS if values.get(key) is bad]
    pending = _num(report.get("pending_batches")) or 0
    age = _num(report.get("oldest_pending_age_ms")) or 0
    if pending > BACKLOG_BATCHES or age > BACKLOG_AGE_MS:
        problems.append("BACKLOG")
    mode = _num(values.get(GNSS_MODE))
    if mode is not None and mode < 2:
        problems.append("NO GNSS")
    problems += _snapshot_age(health, values, now_ms)
    return problems or ["OK"]


def _snapshot_age(health: object, values: Mapping[str, object], now_ms: int) -> list[str]:
    if not isinstance(health, Mapping):
        return ["NO HEALTH SNAPSHOT"]
    interval_s = _num(values.get(HEALTH_INTERVAL_S)) or 60.0
    taken = _num(health.get("time_ms"))
    if taken is not None and now_ms - taken > STALE_INTERVALS * interval_s * 1000:
        return ["STALE"]
    return []


def disk_full(report: Mapping[str, object], values: Mapping[str, object]) -> bool:
    """The last snapshot says outbox writes fail for lack of space, or the filesystem has
    less than the reserve free now (the outbox evicts to make room: data is being lost)."""
    if values.get(DISK_FULL) is True:
        return True
    free = _num(report.get(DISK_FREE_BYTES))
    reserve = _num(report.get(DISK_RESERVE_BYTES))
    return free is not None and reserve is not None and free < reserve


# long: one row per line of the screen, in screen order; split, the order would scatter.
def format_human(report: Mapping[str, object], now_ms: int) -> str:
    """Aligned ``key: value`` lines for a terminal: headline first, then the last health
    snapshot; outbox figures are read from the file now, the rest is the snapshot's."""
    health = report.get("health")
    values: Mapping[str, object] = {}
    rows: list[tuple[str, str]] = [("status", " + ".join(headline(report, now_ms)))]
    if isinstance(health, Mapping):
        values = health.get("values") or {}
        taken = _num(health.get("time_ms"))
        ago = "-" if taken is None else human_duration_ms(now_ms - taken) + " ago"
        rows.append(("snapshot", f"{ago} ({values.get('health_reason', '?')})"))
        rows.append(
            (
                "agent",
                f"{values.get('agent_version', '?')} ({values.get('agent_mode', '?')}), "
                f"config {values.get('config_hash') or '?'}, "
                f"up {human_duration_ms((_num(values.get('uptime_s')) or 0) * 1000)}",
            )
        )
        link = "connected" if values.get(UPLINK_CONNECTED) else "disconnected"
        rows.append(
            (
                "uplink",
                f"{link}, {values.get('reconnects', 0)} reconnects, "
                f"PUBACK {human_duration_ms(values.get('puback_rtt_ms'))}, "
                f"end-to-end ack {human_duration_ms(values.get('ack_rtt_ms'))}",
            )
        )
        rows.append(("sent today", human_bytes(values.get("bytes_sent_today"))))
    rows.append(
        (
            "outbox",
            f"{report.get('pending_batches')} batches pending "
            f"({human_bytes(report.get('pending_bytes'))}), "
            f"oldest {human_duration_ms(report.get('oldest_pending_age_ms'))} old, "
            f"{report.get('staged_records')} records staged",
        )
    )
    rows.append(("acked seq", f"{report.get('highest_acked_seq')} (next {report.get('next_seq')})"))
    stop = report.get("last_stop")
    if isinstance(stop, Mapping):
        rows.append(("last stop", _stop_line(stop, now_ms)))
    rows.append(("disk space", _disk_line(report, values)))
    dropped = report.get("dropped")
    if isinstance(dropped, Mapping) and dropped:
        rows.append(("dropped", ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()))))
    if values:
        mode = _num(values.get(GNSS_MODE))
        gnss = "not configured" if mode is None else _MODES.get(int(mode), f"mode {mode:.0f}")
        offset = _num(values.get("clock_offset_ms"))
        if offset is not None:
            gnss += f", clock offset {offset:+.0f} ms"
        rows.append(("gnss", gnss))
        rows.append(
            (
                "camera",
                f"failsafe {_yes_no(values.get('camera_failsafe'))}, "
                f"tamper {_yes_no(values.get('camera_tamper'))}",
            )
        )
        for key in sorted(k for k in values if k.startswith("bus_") and k.endswith("_fps")):
            bus = key[len("bus_") : -len("_fps")]
            active = values.get(f"bus_{bus}_active")
            rows.append(
                (
                    f"bus {bus}",
                    f"{_num(values.get(key)) or 0:.0f} frames/s"
                    f"{'' if active is not False else ' (silent)'}, "
                    f"{values.get(f'bus_{bus}_error_frames', 0)} error frames, "
                    f"{values.get(f'bus_{bus}_decode_errors', 0)} decode errors",
                )
            )
        rows.append(("disk free", human_bytes(values.get(DISK_FREE_BYTES))))
        cpu_pct = _num(values.get("cpu_pct"))
        rows.append(
            (
                "cpu",
                f"{_num(values.get('cpu_s')) or 0:.1f} s"
                + ("" if cpu_pct is None else f" ({cpu_pct:.1f} %)"),
            )
        )
        rows.append(("memory", human_bytes(values.get("rss_bytes")) + " resident"))
    width = max(len(k) for k, _ in rows) + 1
    return "\n".join(f"{k + ':':<{width}} {v}" for k, v in rows)


def _disk_line(report: Mapping[str, object], values: Mapping[str, object]) -> str:
    """Free space now (the outbox figures are read now too), then the snapshot's count of
    writes that failed for space."""
    line = (
        f"{human_bytes(report.get(DISK_FREE_BYTES))} free now, "
        f"reserve {human_bytes(report.get(DISK_RESERVE_BYTES))}"
    )
    failures = _num(values.get(OUTBOX_WRITE_FAILURES)) or 0
    held = _num(values.get(OUTBOX_HELD_RECORDS)) or 0
    dropped = _num(values.get(OUTBOX_DROPPED_HELD)) or 0
    if failures or held or dropped:
        line += (
            f", {failures:.0f} writes failed for space, {held:.0f} records held in memory, "
            f"{dropped:.0f} dropped"
        )
    return line


def _stop_line(stop: Mapping[str, object], now_ms: int) -> str:
    taken = _num(stop.get("time_ms"))
    ago = "-" if taken is None else human_duration_ms(now_ms - taken) + " ago"
    link = "" if stop.get("connected") else " (uplink not connected)"
    return (
        f"{ago}, {stop.get('acked_during_drain', 0)} batches acked during the drain, "
        f"{stop.get('pending_batches', 0)} left pending{link}"
    )


def _yes_no(value: object) -> str:
    if value is None:
        return "unknown"
    return "YES" if value else "no"
