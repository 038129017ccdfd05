"""Vehicle health in the store: the per-vehicle counters ingest keeps up to date, the
health history and the health state read for alerts (backend-neutral SQL, like ``engine``).

Ingest keeps three small per-vehicle records current, so that the fleet view reads one
row per vehicle and never scans a history table:

* ``health_latest``: the snapshot with the latest record time (snapshots arrive out of
  order: event batches overtake the backlog), where a record time past the collector's
  receive time counts as that receive time (``order_ms``): a vehicle clock running ahead,
  even at 2^53 - 1, never pins "latest" in the future;
* ``epoch_acks.max_seq`` / ``received``: the highest seq and the number of distinct seqs
  received per epoch; their difference is the number of missing seqs; ``first_rx_ms`` /
  ``last_rx_ms``: when the epoch's first and last new batch arrived; ``first_record_ms`` /
  ``last_record_ms``: the earliest and latest record time those batches carried (two
  epochs live at once whose record times overlap are two agents running as one vehicle;
  an old epoch draining after a restart carries only records older than the new one's);
* ``vehicle_status.rx_*``: payload bytes received per UTC day and UTC month;
* ``vehicle_status.clock_ahead_*``: the last message whose times ran ahead of the
  collector's clock.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from cloud_collector.errors import QueryError
from cloud_collector.store.base import (
    MAX_HEALTH_POINTS,
    RECENT_EPOCHS,
    EpochSpan,
    Fleets,
    HealthPoint,
    HealthQuery,
    VehicleHealth,
    VehicleStatus,
    utc_day,
)
from protocol.records import Health, Scalar

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from cloud_collector.store.engine import Tx

MAX_HEALTH_LIMIT = 100_000


def utc_month(time_ms: int) -> str:
    return time.strftime("%Y-%m", time.gmtime(time_ms // 1000))


def _values(raw: Any) -> dict[str, Scalar]:
    """A stored ``values`` column: JSON text (SQLite, and asyncpg's default for JSONB)."""
    parsed = json.loads(raw) if isinstance(raw, str | bytes) else raw
    return dict(parsed) if isinstance(parsed, dict) else {}


# -- written by ingest -------------------------------------------------------------------


async def count_rx(tx: Tx, vehicle: str, payload_bytes: int, received_ms: int) -> None:
    """Add a received batch payload to the vehicle's day and month byte counters (the row
    exists already). A new UTC day or month restarts its counter."""
    day = utc_day(received_ms)
    month = day[:7]
    await tx.execute(
        "UPDATE vehicle_status SET"
        " rx_bytes_today = CASE WHEN rx_day = ? THEN rx_bytes_today ELSE 0 END + ?,"
        " rx_day = ?,"
        " rx_bytes_month = CASE WHEN rx_month = ? THEN rx_bytes_month ELSE 0 END + ?,"
        " rx_month = ? WHERE vehicle = ?",
        day, payload_bytes, day, month, payload_bytes, month, vehicle,
    )  # fmt: skip


def latest_order(time_ms: int, received_ms: int | None) -> int:
    """Where a snapshot ranks for "latest": its own time, but never past when the
    collector received it (a snapshot cannot be taken after it arrived)."""
    return time_ms if received_ms is None else min(time_ms, received_ms)


async def note_latest_health(
    tx: Tx, vehicle: str, snapshots: Sequence[Health], received_ms: int | None = None
) -> None:
    """Keep the snapshot that ranks latest (``latest_order``; then the later own time,
    then the first)."""
    if not snapshots:
        return
    latest = max(snapshots, key=lambda s: (latest_order(s.time_ms, received_ms), s.time_ms))
    order = latest_order(latest.time_ms, received_ms)
    await tx.execute(
        'INSERT INTO health_latest (vehicle, time_ms, "values", order_ms) VALUES (?, ?, ?, ?)'
        ' ON CONFLICT (vehicle) DO UPDATE SET time_ms = excluded.time_ms,'
        ' "values" = excluded."values", order_ms = excluded.order_ms'
        " WHERE health_latest.order_ms < excluded.order_ms"
        " OR (health_latest.order_ms = excluded.order_ms"
        " AND health_latest.time_ms < excluded.time_ms)",
        vehicle, latest.time_ms, json.dumps(latest.values, sort_keys=True), order,
    )  # fmt: skip


async def count_receipt(
    tx: Tx,
    greatest: str,
    vehicle: str,
    epoch: str,
    seq: int,
    *,
    received_ms: int | None = None,
    records: tuple[int, int] | None = None,
) -> None:
    """One more distinct seq received in (vehicle, epoch); the ack row exists already.
    ``records``: the batch's first and last record time, when it was decoded (a
    quarantined payload's times are unknown and widen nothing)."""
    span_sql = ""
    span_args: tuple[int, ...] = ()
    if records is not None:
        span_sql = (
            f", first_record_ms = COALESCE({tx.least}(first_record_ms, ?), ?),"
            f" last_record_ms = COALESCE({greatest}(last_record_ms, ?), ?)"
        )
        span_args = (records[0], records[0], records[1], records[1])
    await tx.execute(
        f"UPDATE epoch_acks SET max_seq = {greatest}(max_seq, ?), received = received + 1,"
        " first_rx_ms = COALESCE(first_rx_ms, ?),"
        # SQLite's MAX is NULL when an argument is: COALESCE covers both NULL sides.
        f" last_rx_ms = COALESCE({greatest}(last_rx_ms, ?), ?, last_rx_ms){span_sql}"
        " WHERE vehicle = ? AND epoch = ?",
        seq, received_ms, received_ms, received_ms, *span_args, vehicle, epoch,
    )  # fmt: skip


async def note_clock_ahead(
    tx: Tx, *, fleet: str, vehicle: str, ahead_ms: int, received_ms: int
) -> None:
    """A message of ``vehicle`` carried a time ``ahead_ms`` past ``received_ms``."""
    await tx.execute(
        "INSERT INTO vehicle_status (vehicle, fleet, clock_ahead_ms, clock_ahead_at_ms)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (vehicle) DO UPDATE SET"
        " clock_ahead_ms = excluded.clock_ahead_ms,"
        " clock_ahead_at_ms = excluded.clock_ahead_at_ms"
        " WHERE vehicle_status.clock_ahead_at_ms IS NULL"
        " OR vehicle_status.clock_ahead_at_ms <= excluded.clock_ahead_at_ms",
        vehicle, fleet, ahead_ms, received_ms,
    )  # fmt: skip


# -- queries -----------------------------------------------------------------------------


def _window(q: HealthQuery) -> tuple[str, list[object]]:
    where = ["vehicle = ?"]
    args: list[object] = [q.vehicle]
    if q.since_ms is not None:
        where.append("time_ms >= ?")
        args.append(q.since_ms)
    if q.until_ms is not None:
        where.append("time_ms < ?")
        args.append(q.until_ms)
    return " AND ".join(where), args


async def history(tx: Tx, q: HealthQuery) -> list[HealthPoint]:
    if q.points is not None:
        return await downsampled(tx, q)
    if not 1 <= q.limit <= MAX_HEALTH_LIMIT:
        raise QueryError(f"limit must be in [1, {MAX_HEALTH_LIMIT}], not {q.limit}")
    where, args = _window(q)
    rows = await tx.fetch(
        f'SELECT time_ms, "values" FROM health WHERE {where} ORDER BY time_ms DESC LIMIT ?',
        *args, q.limit,
    )  # fmt: skip
    return [HealthPoint(time_ms=int(r[0]), values=_values(r[1])) for r in reversed(rows)]


def _number(x: Any) -> float:
    n = float(x)
    return int(n) if n.is_integer() else n


async def downsampled(tx: Tx, q: HealthQuery) -> list[HealthPoint]:
    """``q.points`` equal time buckets over the window: per bucket, the last snapshot,
    the snapshot count and each numeric key's lowest and highest value (two grouped
    reads over the window's rows; only one row per bucket leaves the database)."""
    if q.points is None or not 1 <= q.points <= MAX_HEALTH_POINTS:
        raise QueryError(f"points must be in [1, {MAX_HEALTH_POINTS}], not {q.points}")
    where, args = _window(q)
    bounds = await tx.fetch(f"SELECT MIN(time_ms), MAX(time_ms) FROM health WHERE {where}", *args)
    if not bounds or bounds[0][0] is None:
        return []
    lo = int(bounds[0][0]) if q.since_ms is None else q.since_ms
    hi = int(bounds[0][1]) + 1 if q.until_ms is None else q.until_ms
    width = max(1, -(-(hi - lo) // q.points))
    bucket = "(time_ms - ?) / ?"
    rows = await tx.fetch(
        f'SELECT b, time_ms, "values", n FROM (SELECT {bucket} AS b, time_ms, "values",'
        f" ROW_NUMBER() OVER (PARTITION BY {bucket} ORDER BY time_ms DESC) AS rn,"
        f" COUNT(*) OVER (PARTITION BY {bucket}) AS n FROM health WHERE {where}) AS s"
        " WHERE rn = 1 ORDER BY time_ms",
        lo, width, lo, width, lo, width, *args,
    )  # fmt: skip
    low: dict[int, dict[str, float]] = {}
    high: dict[int, dict[str, float]] = {}
    for r in await tx.fetch(
        f"SELECT {bucket} AS b, j.key, MIN({tx.entry_number}), MAX({tx.entry_number})"
        f' FROM health, {tx.json_entries}(health."values") AS j WHERE {where} GROUP BY 1, 2',
        lo,
        width,
        *args,
    ):
        if r[2] is not None:
            low.setdefault(int(r[0]), {})[str(r[1])] = _number(r[2])
            high.setdefault(int(r[0]), {})[str(r[1])] = _number(r[3])
    return [
        HealthPoint(
            time_ms=int(r[1]),
            values=_values(r[2]),
            count=int(r[3]),
            low=low.get(int(r[0]), {}),
            high=high.get(int(r[0]), {}),
        )
        for r in rows
    ]


def vehicle_scope(vehicle_id: str | None, fleets: Fleets) -> tuple[list[str], tuple[object, ...]]:
    """SQL conditions (on a ``vehicle`` column) and their arguments limiting a read to
    ``vehicle_id`` and to the vehicles of ``fleets``, when given."""
    conditions: list[str] = []
    args: list[object] = []
    if vehicle_id is not None:
        conditions.append("vehicle = ?")
        args.append(vehicle_id)
    if fleets is not None:
        marks = ", ".join("?" * len(fleets)) or "NULL"
        conditions.append(
            f"vehicle IN (SELECT vehicle FROM vehicle_status WHERE fleet IN ({marks}))"
        )
        args += fleets
    return conditions, tuple(args)


# long: the four reads share one transaction and one vehicle filter, kept together.
async def vehicle_health(
    tx: Tx,
    vehicle_id: str | None,
    status_columns: str,
    status: Callable[[Sequence[Any]], VehicleStatus],
    fleets: Fleets = None,
) -> list[VehicleHealth]:
    """Four indexed reads of per-vehicle rows (no history scans), joined here; each
    read limited to ``vehicle_id`` and ``fleets`` when given."""
    conditions, args = vehicle_scope(vehicle_id, fleets)
    only = "" if not conditions else " WHERE " + " AND ".join(conditions)
    rows = await tx.fetch(
        f"SELECT {status_columns}, rx_day, rx_bytes_today, rx_month, rx_bytes_month,"
        f" clock_ahead_ms, clock_ahead_at_ms FROM vehicle_status{only} ORDER BY vehicle",
        *args,
    )
    if not rows:
        return []
    latest_rows = await tx.fetch(
        f'SELECT vehicle, time_ms, "values" FROM health_latest{only}', *args
    )
    latest = {str(r[0]): HealthPoint(time_ms=int(r[1]), values=_values(r[2])) for r in latest_rows}
    failsafe = {
        str(r[0]): bool(r[1])
        for r in await tx.fetch(f"SELECT vehicle, failsafe FROM vehicle_state{only}", *args)
    }
    gap_where = "".join(" AND " + c for c in conditions)
    gaps: dict[str, dict[str, int]] = {}
    for r in await tx.fetch(
        "SELECT vehicle, epoch, max_seq - received FROM epoch_acks"
        f" WHERE max_seq > received{gap_where} ORDER BY vehicle, epoch",
        *args,
    ):
        gaps.setdefault(str(r[0]), {})[str(r[1])] = int(r[2])
    epochs: dict[str, list[EpochSpan]] = {}
    for r in await tx.fetch(
        "SELECT vehicle, epoch, first_rx_ms, last_rx_ms, first_record_ms, last_record_ms"
        " FROM (SELECT vehicle, epoch, first_rx_ms, last_rx_ms, first_record_ms,"
        " last_record_ms, ROW_NUMBER() OVER (PARTITION BY vehicle"
        " ORDER BY last_rx_ms DESC, epoch) AS rn FROM epoch_acks"
        f" WHERE last_rx_ms IS NOT NULL{gap_where}) AS recent WHERE rn <= ?"
        " ORDER BY vehicle, last_rx_ms DESC, epoch",
        *args, RECENT_EPOCHS,
    ):  # fmt: skip
        epochs.setdefault(str(r[0]), []).append(
            EpochSpan(
                int(r[1]), int(r[2]), int(r[3]),
                None if r[4] is None else int(r[4]), None if r[5] is None else int(r[5]),
            )
        )  # fmt: skip
    width = len(status_columns.split(","))
    out = []
    for r in rows:
        s = status(r[:width])
        rx = r[width:]
        out.append(
            VehicleHealth(
                status=s,
                latest_health=latest.get(s.vehicle),
                camera_failsafe=failsafe.get(s.vehicle, False),
                seq_gaps=gaps.get(s.vehicle, {}),
                rx_day=rx[0],
                rx_bytes_today=int(rx[1]),
                rx_month=rx[2],
                rx_bytes_month=int(rx[3]),
                clock_ahead_ms=None if rx[4] is None else int(rx[4]),
                clock_ahead_at_ms=None if rx[5] is None else int(rx[5]),
                epochs=tuple(epochs.get(s.vehicle, ())),
            )
        )
    return out
