"""Vehicle health in the store: the per-vehicle counters ingest keeps up to date, the
health history and the health state read for alerts (backend-neutral SQL, like ``engine``).

Ingest keeps three small per-vehicle records current, so that the fleet view reads one
row per vehicle and never scans a history table:

* ``health_latest``: the snapshot with the latest record time (snapshots arrive out of
  order: event batches overtake the backlog);
* ``epoch_acks.max_seq`` / ``received``: the highest seq and the number of distinct seqs
  received per epoch; their difference is the number of missing seqs;
* ``vehicle_status.rx_*``: payload bytes received per UTC day and UTC month.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from cloud_collector.errors import QueryError
from cloud_collector.store.base import HealthPoint, HealthQuery, VehicleHealth, VehicleStatus
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
    day = time.strftime("%Y-%m-%d", time.gmtime(received_ms // 1000))
    month = day[:7]
    await tx.execute(
        "UPDATE vehicle_status SET"
        " rx_bytes_today = CASE WHEN rx_day = ? THEN rx_bytes_today ELSE 0 END + ?,"
        " rx_day = ?,"
        " rx_bytes_month = CASE WHEN rx_month = ? THEN rx_bytes_month ELSE 0 END + ?,"
        " rx_month = ? WHERE vehicle = ?",
        day, payload_bytes, day, month, payload_bytes, month, vehicle,
    )  # fmt: skip


async def note_latest_health(tx: Tx, vehicle: str, snapshots: Sequence[Health]) -> None:
    """Keep the snapshot with the latest time (the first of equal times wins)."""
    if not snapshots:
        return
    latest = max(snapshots, key=lambda s: s.time_ms)
    await tx.execute(
        'INSERT INTO health_latest (vehicle, time_ms, "values") VALUES (?, ?, ?)'
        ' ON CONFLICT (vehicle) DO UPDATE SET time_ms = excluded.time_ms,'
        ' "values" = excluded."values" WHERE health_latest.time_ms < excluded.time_ms',
        vehicle, latest.time_ms, json.dumps(latest.values, sort_keys=True),
    )  # fmt: skip


async def count_receipt(tx: Tx, greatest: str, vehicle: str, epoch: str, seq: int) -> None:
    """One more distinct seq received in (vehicle, epoch); the ack row exists already."""
    await tx.execute(
        f"UPDATE epoch_acks SET max_seq = {greatest}(max_seq, ?), received = received + 1"
        " WHERE vehicle = ? AND epoch = ?",
        seq, vehicle, epoch,
    )  # fmt: skip


# -- queries -----------------------------------------------------------------------------


async def history(tx: Tx, q: HealthQuery) -> list[HealthPoint]:
    if not 1 <= q.limit <= MAX_HEALTH_LIMIT:
        raise QueryError(f"limit must be in [1, {MAX_HEALTH_LIMIT}], not {q.limit}")
    where = ["vehicle = ?"]
    args: list[object] = [q.vehicle]
    if q.since_ms is not None:
        where.append("time_ms >= ?")
        args.append(q.since_ms)
    if q.until_ms is not None:
        where.append("time_ms < ?")
        args.append(q.until_ms)
    rows = await tx.fetch(
        f'SELECT time_ms, "values" FROM health WHERE {" AND ".join(where)}'
        " ORDER BY time_ms DESC LIMIT ?",
        *args, q.limit,
    )  # fmt: skip
    return [HealthPoint(time_ms=int(r[0]), values=_values(r[1])) for r in reversed(rows)]


async def vehicle_health(
    tx: Tx,
    vehicle_id: str | None,
    status_columns: str,
    status: Callable[[Sequence[Any]], VehicleStatus],
) -> list[VehicleHealth]:
    """Four indexed reads of per-vehicle rows (no history scans), joined here."""
    only = "" if vehicle_id is None else " WHERE vehicle = ?"
    args: tuple[object, ...] = () if vehicle_id is None else (vehicle_id,)
    rows = await tx.fetch(
        f"SELECT {status_columns}, rx_day, rx_bytes_today, rx_month, rx_bytes_month"
        f" FROM vehicle_status{only} ORDER BY vehicle",
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
    gap_where = " AND vehicle = ?" if vehicle_id is not None else ""
    gaps: dict[str, dict[str, int]] = {}
    for r in await tx.fetch(
        "SELECT vehicle, epoch, max_seq - received FROM epoch_acks"
        f" WHERE max_seq > received{gap_where} ORDER BY vehicle, epoch",
        *args,
    ):
        gaps.setdefault(str(r[0]), {})[str(r[1])] = int(r[2])
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
            )
        )
    return out
