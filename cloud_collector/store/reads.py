"""The query side's SQL, backend-neutral, over the same connection API as the ledger (``Tx``).

Read-only: nothing here writes, so a query engine can be replaced without touching
receipts and acks (``engine``). Same SQL dialect rules as ``engine``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import gc
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from typing import Any, Final

from cloud_collector.errors import QueryError
from cloud_collector.store import aggregate as agg
from cloud_collector.store.base import (
    MAX_EVENT_LIMIT,
    BBox,
    CellHour,
    EventEvidence,
    EventPage,
    EventQuery,
    EvidenceFrame,
    Fleets,
    RoadQuery,
    SignCluster,
    StoredEvent,
    VehicleStatus,
)
from cloud_collector.store.engine import Row, Tx, fetchrow
from cloud_collector.store.health import vehicle_scope


def encode_cursor(time_ms: int, event_id: int) -> str:
    return base64.urlsafe_b64encode(f"{time_ms}.{event_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        time_text, id_text = base64.urlsafe_b64decode(padded).decode().split(".")
        return int(time_text), int(id_text)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise QueryError(f"invalid cursor {cursor!r}") from exc


def _bbox_sql(bbox: BBox | None, where: list[str], args: list[object]) -> None:
    if bbox is None:
        return
    min_lon, min_lat, max_lon, max_lat = bbox
    if min_lon > max_lon or min_lat > max_lat:
        raise QueryError(f"bbox {bbox} is not (min_lon, min_lat, max_lon, max_lat)")
    where.append("lat BETWEEN ? AND ? AND lon BETWEEN ? AND ?")
    args += [min_lat, max_lat, min_lon, max_lon]


EVENT_COLUMNS = (
    "id, time_ms, vehicle, fleet, type, attrs, lat, lon, h3_12, speed_kmh, source_bus,"
    " source_id, epoch, seq"
)


async def events(tx: Tx, q: EventQuery) -> EventPage:
    if not 1 <= q.limit <= MAX_EVENT_LIMIT:
        raise QueryError(f"limit must be in [1, {MAX_EVENT_LIMIT}], not {q.limit}")
    where: list[str] = []
    args: list[object] = []
    for column, value in (("vehicle", q.vehicle), ("type", q.type)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    _fleet_sql(q.fleets, where, args)
    if q.min_vehicles > 0:
        where.append("h3_12 IS NOT NULL")
    if q.since_ms is not None:
        where.append("time_ms >= ?")
        args.append(q.since_ms)
    if q.until_ms is not None:
        where.append("time_ms < ?")
        args.append(q.until_ms)
    _bbox_sql(q.bbox, where, args)
    if q.cursor is not None:
        after_time, after_id = decode_cursor(q.cursor)
        where.append("(time_ms > ? OR (time_ms = ? AND id > ?))")
        args += [after_time, after_time, after_id]
    sql = f"SELECT {EVENT_COLUMNS} FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY time_ms, id LIMIT ?"
    rows = await tx.fetch(sql, *args, q.limit + 1)
    page = [_event(r) for r in rows[: q.limit]]
    more = len(rows) > q.limit
    cursor = encode_cursor(page[-1].time_ms, page[-1].id) if more else None
    if q.min_vehicles > 0:
        page = await _k_anonymous(tx, page, q.min_vehicles)
    return EventPage(page, cursor)


def _fleet_sql(fleets: Fleets, where: list[str], args: list[object]) -> None:
    if fleets is not None:
        where.append(f"fleet IN ({', '.join('?' * len(fleets)) or 'NULL'})")
        args += fleets


async def _k_anonymous(tx: Tx, page: list[StoredEvent], k: int) -> list[StoredEvent]:
    """The events of ``page`` whose res-10 cell-hour had at least ``k`` distinct
    vehicles (one indexed read of their cell-hours)."""
    keys = {e.id: (agg.parent(e.h3_12), agg.hour_of(e.time_ms)) for e in page if e.h3_12}
    wanted = sorted(set(keys.values()))
    if not wanted:
        return []
    pairs = " OR ".join("(cell = ? AND hour_ms = ?)" for _ in wanted)
    rows = await tx.fetch(
        f"SELECT cell, hour_ms FROM road_cells WHERE vehicles >= ? AND ({pairs})",
        k, *[v for key in wanted for v in key],
    )  # fmt: skip
    enough = {(int(r[0]), int(r[1])) for r in rows}
    return [e for e in page if keys.get(e.id) in enough]


async def event_evidence(tx: Tx, event_id: int, fleets: Fleets = None) -> EventEvidence | None:
    where: list[str] = ["id = ?"]
    args: list[object] = [event_id]
    _fleet_sql(fleets, where, args)
    row = await fetchrow(
        tx, f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)}", *args
    )
    if row is None:
        return None
    event = _event(row)
    if event.source_bus is None:
        return EventEvidence(event, [])
    rows = await tx.fetch(
        "SELECT time_us, bus, can_id, extended, data FROM evidence_frames"
        " WHERE vehicle = ? AND bus = ? AND event_ms = ? ORDER BY time_us",
        event.vehicle, event.source_bus, event.time_ms,
    )  # fmt: skip
    frames = [EvidenceFrame(int(r[0]), r[1], int(r[2]), bool(r[3]), bytes(r[4])) for r in rows]
    return EventEvidence(event, frames)


def _event(r: Row) -> StoredEvent:
    return StoredEvent(
        id=int(r[0]), time_ms=int(r[1]), vehicle=r[2], fleet=r[3], type=r[4],
        attrs=json.loads(r[5]), lat=r[6], lon=r[7], h3_12=r[8], speed_kmh=r[9],
        source_bus=r[10], source_id=r[11], epoch=int(r[12]), seq=int(r[13]),
    )  # fmt: skip


# The fields of CellHour in the column order of the road query.
_CELL_HOUR_FIELDS: Final = (
    "cell", "hour_ms", "lat", "lon", "counts", "exposure", "hotspot_rate", "mean_speed_kmh",
    "wipers_share", "failsafe_share", "lane_quality_share",
)  # fmt: skip
if tuple(f.name for f in dataclasses.fields(CellHour)) != _CELL_HOUR_FIELDS or hasattr(
    CellHour, "__post_init__"
):
    raise ImportError("CellHour changed: update reads.road_conditions and _cell_hours")


async def road_conditions(tx: Tx, q: RoadQuery) -> list[CellHour]:
    """One range scan of ``road_cells`` in (hour_ms, cell) order; the shares, rates and
    means are computed by the database (IEEE double division, as Python would)."""
    where = ["passes >= ?"]
    args: list[object] = [max(q.min_exposure, 0)]
    if q.min_vehicles > 0:
        where.append("vehicles >= ?")
        args.append(q.min_vehicles)
    if q.since_ms is not None:
        where.append("hour_ms >= ?")
        args.append(q.since_ms)
    if q.until_ms is not None:
        where.append("hour_ms < ?")
        args.append(q.until_ms)
    _bbox_sql(q.bbox, where, args)
    if q.type is None:
        counts, events_n, head = "counts", "events_n", []
    else:
        counts, events_n, head = tx.count_of, f"COALESCE({tx.count_of}, 0)", [q.type, q.type]
    columns = await tx.fetch_columns(
        f"SELECT cell, hour_ms, lat, lon, {counts}, passes,"
        f" CAST(100 AS DOUBLE PRECISION) * {events_n} / NULLIF(passes, 0),"
        " speed_sum / NULLIF(speed_n, 0),"
        " CAST(wipers AS DOUBLE PRECISION) / NULLIF(passes, 0),"
        " CAST(failsafe AS DOUBLE PRECISION) / NULLIF(passes, 0),"
        " CAST(lanes AS DOUBLE PRECISION) / NULLIF(passes, 0)"
        f" FROM road_cells WHERE {' AND '.join(where)} ORDER BY hour_ms, cell",
        len(_CELL_HOUR_FIELDS), *head, *args,
    )  # fmt: skip
    return _cell_hours(columns, q.type)


def _parsed_counts(texts: Sequence[str]) -> Iterator[dict[str, int]]:
    """The JSON objects ``texts`` as fresh dicts. Few distinct texts recur across many
    cell-hours, so each is parsed once and copied per row."""
    parsed = {text: json.loads(text) for text in set(texts)}
    return map(dict, map(parsed.__getitem__, texts))


def _cell_hours(columns: Sequence[Sequence[Any]], kind: str | None) -> list[CellHour]:
    """``CellHour(cell=c[0][i], hour_ms=c[1][i], ...)`` for each row i of the road query.

    Built column by column with C-level loops (``map`` over the slot descriptors) instead
    of one constructor call per row: a city-wide query returns 10^5 rows, and the
    per-row interpreter overhead would dominate its latency. The result is the same as
    the constructor's (the fields are checked against the dataclass at import, and
    CellHour has no ``__post_init__``). The cyclic garbage collector is paused meanwhile:
    the new objects hold no cycles, and its allocation-triggered passes over the
    growing young generation would otherwise cost as much as the building."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        cells: list[CellHour] = list(map(object.__new__, repeat(CellHour, len(columns[0]))))
        for name, column in zip(_CELL_HOUR_FIELDS, columns, strict=True):
            values: Iterable[Any] = column
            if name == "counts":
                if kind is None:
                    values = _parsed_counts(column)
                else:
                    values = [{} if n is None else {kind: int(n)} for n in column]
            deque(map(getattr(CellHour, name).__set__, cells, values), maxlen=0)
    finally:
        if collecting:
            gc.enable()
    return cells


async def signs(tx: Tx, bbox: BBox | None) -> list[SignCluster]:
    where: list[str] = []
    args: list[object] = []
    _bbox_sql(bbox, where, args)
    sql = (
        "SELECT id, sign_type, lat, lon, limit_kmh, observations, vehicles, first_seen_ms,"
        " last_seen_ms FROM sign_clusters"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = await tx.fetch(sql + " ORDER BY id", *args)
    return [
        SignCluster(
            id=int(r[0]), sign_type=int(r[1]), lat=float(r[2]), lon=float(r[3]),
            limit_kmh=None if r[4] is None else int(r[4]), observations=int(r[5]),
            vehicles=int(r[6]), first_seen_ms=int(r[7]), last_seen_ms=int(r[8]),
        )
        for r in rows
    ]  # fmt: skip


STATUS_COLUMNS = (
    "vehicle, fleet, online, presence_ms, last_seen_ms, last_epoch, last_seq, lag_ms, day,"
    " batches_today, bytes_today, batches_total, bytes_total, records_total, duplicates,"
    " quarantined"
)


def _status(r: Row) -> VehicleStatus:
    return VehicleStatus(
        vehicle=r[0], fleet=r[1], online=None if r[2] is None else bool(r[2]),
        presence_ms=r[3], last_seen_ms=r[4], last_epoch=None if r[5] is None else int(r[5]),
        last_seq=r[6], lag_ms=r[7], day=r[8], batches_today=int(r[9]), bytes_today=int(r[10]),
        batches_total=int(r[11]), bytes_total=int(r[12]), records_total=int(r[13]),
        duplicates=int(r[14]), quarantined=int(r[15]),
    )  # fmt: skip


# Public name for the health reads (store.health) of the same columns.
status_of = _status


async def vehicles(tx: Tx) -> list[VehicleStatus]:
    rows = await tx.fetch(f"SELECT {STATUS_COLUMNS} FROM vehicle_status ORDER BY vehicle")
    return [_status(r) for r in rows]


async def vehicle(tx: Tx, vehicle_id: str, fleets: Fleets = None) -> VehicleStatus | None:
    conditions, args = vehicle_scope(vehicle_id, fleets)
    row = await fetchrow(
        tx, f"SELECT {STATUS_COLUMNS} FROM vehicle_status WHERE {' AND '.join(conditions)}", *args
    )
    return None if row is None else _status(row)


async def metrics(tx: Tx) -> dict[str, int | float]:
    """Totals from the per-vehicle rows (no hot global counter row to contend on) and
    quarantine counts by reason (``quarantine_total:<reason>``)."""
    row = await fetchrow(
        tx,
        "SELECT COUNT(*), COALESCE(SUM(batches_total), 0), COALESCE(SUM(bytes_total), 0),"
        " COALESCE(SUM(records_total), 0), COALESCE(SUM(duplicates), 0),"
        " COALESCE(SUM(CASE WHEN online THEN 1 ELSE 0 END), 0) FROM vehicle_status",
    )
    assert row is not None
    out: dict[str, int | float] = {
        "vehicles": int(row[0]),
        "batches_total": int(row[1]),
        "bytes_total": int(row[2]),
        "records_total": int(row[3]),
        "duplicates_total": int(row[4]),
        "vehicles_online": int(row[5]),
    }
    quarantined = 0
    for reason, n in await tx.fetch("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason"):
        out[f"quarantine_total:{reason}"] = int(n)
        quarantined += int(n)
    out["quarantine_total"] = quarantined
    return out
