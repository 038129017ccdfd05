"""The query side's SQL, backend-neutral, over the same connection API as the ledger (``Tx``).

Read-only: nothing here writes, so a query engine can be replaced without touching
receipts and acks (``engine``). Same SQL dialect rules as ``engine``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from typing import Any, Final

from cloud_collector.errors import QueryError
from cloud_collector.offload import off_loop
from cloud_collector.store import aggregate as agg
from cloud_collector.store import roads, rollup
from cloud_collector.store.base import (
    MAX_EVENT_LIMIT,
    BBox,
    CellHour,
    CellTotals,
    EventEvidence,
    EventPage,
    EventPoint,
    EventQuery,
    EvidenceFrame,
    Fleets,
    RoadEdge,
    RoadQuery,
    SignCluster,
    StoredEvent,
    TileQuery,
    VehicleStatus,
)
from cloud_collector.store.engine import Row, Tx, fetchrow
from cloud_collector.store.health import vehicle_scope


def encode_cursor(time_ms: int, event_id: int) -> str:
    return base64.urlsafe_b64encode(f"{time_ms}.{event_id}".encode()).decode().rstrip("=")


# A cursor's two numbers: plain decimal digits, each within a signed 64-bit column (a
# bigger one overflows the driver: a 500 on SQLite, a misleading 503 on PostgreSQL).
_CURSOR = re.compile(r"^([0-9]{1,19})\.([0-9]{1,19})$")
_INT64_MAX: Final = 2**63 - 1


def decode_cursor(cursor: str) -> tuple[int, int]:
    """``(time_ms, event_id)`` of a cursor ``encode_cursor`` made; any other text is a
    ``QueryError`` (a 400), whatever it decodes to."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise QueryError("cursor: not a cursor of this API") from exc
    found = _CURSOR.match(text)
    if found is None or max(int(found[1]), int(found[2])) > _INT64_MAX:
        raise QueryError("cursor: not a cursor of this API")
    return int(found[1]), int(found[2])


def cell_cursor(c: CellHour) -> str:
    """The cursor of the road query page that starts after ``c``."""
    return encode_cursor(c.hour_ms, c.cell)


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


def _event_filters(q: EventQuery) -> tuple[list[str], list[object]]:
    """The WHERE terms and their arguments of the events query ``q``."""
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
        # The leading "time_ms >= ?" is the index range the OR alone does not give the
        # planner (PostgreSQL scanned every earlier row of the index, page after page).
        where.append("time_ms >= ? AND (time_ms > ? OR (time_ms = ? AND id > ?))")
        args += [after_time, after_time, after_time, after_id]
    return where, args


async def events(tx: Tx, q: EventQuery) -> EventPage:
    if not 1 <= q.limit <= MAX_EVENT_LIMIT:
        raise QueryError(f"limit must be in [1, {MAX_EVENT_LIMIT}], not {q.limit}")
    where, args = _event_filters(q)
    sql = f"SELECT {EVENT_COLUMNS} FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY time_ms, id LIMIT ?"
    rows = await tx.fetch(sql, *args, q.limit + 1)
    if len(rows) > _OFF_LOOP_ROWS:
        # Off the event loop that ingest runs on (``offload``).
        page = await off_loop(lambda: _events_of(rows[: q.limit]))
    else:
        page = _events_of(rows[: q.limit])
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


# Rows of an events page converted in a worker thread rather than on the event loop.
_OFF_LOOP_ROWS: Final = 500


def _events_of(rows: Sequence[Row]) -> list[StoredEvent]:
    return [_event(r) for r in rows]


def _event(r: Row) -> StoredEvent:
    return StoredEvent(
        id=int(r[0]), time_ms=int(r[1]), vehicle=r[2], fleet=r[3], type=r[4],
        attrs=json.loads(r[5]), lat=r[6], lon=r[7], h3_12=r[8], speed_kmh=r[9],
        source_bus=r[10], source_id=r[11], epoch=int(r[12]), seq=int(r[13]),
    )  # fmt: skip


# The fields of CellHour in the column order of the road query.
CELL_HOUR_FIELDS: Final = (
    "cell", "hour_ms", "lat", "lon", "counts", "exposure", "hotspot_rate", "mean_speed_kmh",
    "wipers_share", "failsafe_share", "lane_quality_share",
)  # fmt: skip
if tuple(f.name for f in dataclasses.fields(CellHour)) != CELL_HOUR_FIELDS or hasattr(
    CellHour, "__post_init__"
):
    raise ImportError("CellHour changed: update reads.road_conditions and cell_hours")


async def road_conditions(tx: Tx, q: RoadQuery) -> list[CellHour]:
    """One range scan of ``road_cells`` in (hour_ms, cell) order; the shares, rates and
    means are computed by the database (IEEE double division, as Python would)."""
    where = ["passes >= ?"]
    args: list[object] = [max(q.min_exposure, 0)]
    if q.min_vehicles > 0:
        where.append("vehicles >= ?")
        args.append(q.min_vehicles)
    after = None if q.cursor is None else decode_cursor(q.cursor)
    # One lower bound, so that the index range starts at the cursor: given "hour_ms >= ?"
    # as well, SQLite ranged on that and read every earlier row of the period (a page late
    # in a day: 28 ms -> 3 ms at 10 million events). A cursor before ``since`` is no bound.
    if after is not None and (q.since_ms is None or after[0] >= q.since_ms):
        where.append("(hour_ms, cell) > (?, ?)")
        args += after
    elif q.since_ms is not None:
        where.append("hour_ms >= ?")
        args.append(q.since_ms)
    if q.until_ms is not None:
        where.append("hour_ms < ?")
        args.append(q.until_ms)
    _bbox_sql(q.bbox, where, args)
    tail = ""
    if q.limit is not None:
        if q.limit < 1:
            raise QueryError(f"limit must be at least 1, not {q.limit}")
        tail = " LIMIT ?"
        args.append(q.limit)
    if q.type is None:
        counts, events_n, head = "counts", "events_n", []
    else:
        counts, events_n, head = tx.count_of, f"COALESCE({tx.count_of}, 0)", [q.type, q.type]
    columns = await tx.fetch_columns(
        f"SELECT {_cell_hour_columns(counts, events_n)}"
        f" FROM road_cells WHERE {' AND '.join(where)} ORDER BY hour_ms, cell{tail}",
        len(CELL_HOUR_FIELDS), *head, *args,
    )  # fmt: skip
    return cell_hours(columns, q.type)


def _cell_hour_columns(counts: str, events_n: str) -> str:
    """The columns of a CellHour (``CELL_HOUR_FIELDS``) from ``road_cells``: the shares,
    rates and means computed by the database (IEEE double division, as Python would)."""
    return (
        f"cell, hour_ms, lat, lon, {counts}, passes,"
        f" CAST(100 AS DOUBLE PRECISION) * {events_n} / NULLIF(passes, 0),"
        " speed_sum / NULLIF(speed_n, 0),"
        " CAST(wipers AS DOUBLE PRECISION) / NULLIF(passes, 0),"
        " CAST(failsafe AS DOUBLE PRECISION) / NULLIF(passes, 0),"
        " CAST(lanes AS DOUBLE PRECISION) / NULLIF(passes, 0)"
    )


# The columns of every type's counts (a feature collection's cell-hours).
CELL_HOUR_COLUMNS: Final = _cell_hour_columns("counts", "events_n")


def _parsed_counts(texts: Sequence[str]) -> Iterator[dict[str, int]]:
    """The JSON objects ``texts`` as fresh dicts. Few distinct texts recur across many
    cell-hours, so each is parsed once and copied per row."""
    parsed = {text: json.loads(text) for text in set(texts)}
    return map(dict, map(parsed.__getitem__, texts))


def cell_hours(columns: Sequence[Sequence[Any]], kind: str | None) -> list[CellHour]:
    """``CellHour(cell=c[0][i], hour_ms=c[1][i], ...)`` for each row i of the road query.

    Built column by column with C-level loops (``map`` over the slot descriptors) instead
    of one constructor call per row: a page holds up to 10^4 rows, and the per-row
    interpreter overhead would dominate its latency. The result is the same as the
    constructor's (the fields are checked against the dataclass at import, and CellHour
    has no ``__post_init__``)."""
    cells: list[CellHour] = list(map(object.__new__, repeat(CellHour, len(columns[0]))))
    for name, column in zip(CELL_HOUR_FIELDS, columns, strict=True):
        values: Iterable[Any] = column
        if name == "counts":
            if kind is None:
                values = _parsed_counts(column)
            else:
                values = [{} if n is None else {kind: int(n)} for n in column]
        deque(map(getattr(CellHour, name).__set__, cells, values), maxlen=0)
    return cells


def _parent_sql(column: str, res: int) -> str:
    """SQL for the res-``res`` H3 parent of the finer H3 index in ``column`` (bit
    arithmetic on the index: the resolution field set, the finer digits set to 7)."""
    if not 0 <= res <= 15:
        raise QueryError(f"H3 resolution must be within [0, 15], not {res}")
    keep, fill = agg.parent_bits(res)
    return f"(({column} & {keep}) | {fill})"


async def tile_cells(tx: Tx, q: TileQuery) -> list[CellTotals]:
    """The road cells of the period summed per res-``q.res`` parent. The period's whole
    UTC days come from their per-day sums (``rollup``; the city's k-anonymous ones only
    when they hold its k), the hours before and after them from the cell-hours (a range
    scan of the (hour_ms, cell) index, the bbox tested on its centre columns)."""
    days = rollup.whole_days(q.since_ms, q.until_ms)
    if days is not None and q.min_vehicles > 0 and await rollup.recorded_k(tx) != q.min_vehicles:
        days = None
    hours = (
        [(q.since_ms, q.until_ms)]
        if days is None
        else [(q.since_ms, days[0]), (days[1], q.until_ms)]
    )
    parts = [_cell_hours_part(tx, q, lo, hi) for lo, hi in hours if lo < hi]
    if days is not None:
        parts.append(_cell_days_part(tx, q, days))
    rows = await tx.fetch(
        "SELECT p, SUM(passes), SUM(e), SUM(wipers), SUM(failsafe), SUM(lanes),"
        f" SUM(speed_sum), SUM(speed_n) FROM ({' UNION ALL '.join(sql for sql, _ in parts)}) s"
        " GROUP BY p",
        *[arg for _, args in parts for arg in args],
    )  # fmt: skip
    return [
        CellTotals(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]),
                   float(r[6]), int(r[7]))
        for r in rows
    ]  # fmt: skip


# A tile's events are looked up by place, then time (index ``events_cell_time``: for each
# res-8 cell its period's events), when its box needs at most ``MAX_TILE_CELLS`` such
# cells: the entries read are the box's events of the period and little more. A larger
# box is read newest first through the time index until ``limit`` of its events are found,
# fewer entries when the box holds a good share of the city's events.
TILE_CELL_RES: Final = 8
MAX_TILE_CELLS: Final = 256


# The columns one part of the tile's cell query gives (``_cell_part``).
_CELL_PART: Final = "passes, {e} AS e, wipers, failsafe, lanes, speed_sum, speed_n"


def _cell_part(
    tx: Tx, q: TileQuery, source: str, where: list[str], args: list[object]
) -> tuple[str, list[object]]:
    """``(p, passes, e, ...)`` of ``source``'s rows (cell, lat, lon and the sums) in the
    bbox and ``where``: the parent cell, the sums, the events (of ``q.type``)."""
    _bbox_sql(q.bbox, where, args)
    events_n, head = "events_n", []
    if q.type is not None:
        events_n, head = f"COALESCE({tx.count_of}, 0)", [q.type]
    parent = _parent_sql("cell", min(q.res, 10))
    columns = _CELL_PART.format(e=events_n)
    sql = f"SELECT {parent} AS p, {columns} FROM {source} WHERE {' AND '.join(where)}"
    return sql, [*head, *args]


def _cell_hours_part(
    tx: Tx, q: TileQuery, since_ms: int, until_ms: int
) -> tuple[str, list[object]]:
    where = ["hour_ms >= ?", "hour_ms < ?"]
    args: list[object] = [since_ms, until_ms]
    if q.min_vehicles > 0:
        where.append("vehicles >= ?")
        args.append(q.min_vehicles)
    return _cell_part(tx, q, "road_cells", where, args)


def _cell_days_part(tx: Tx, q: TileQuery, days: tuple[int, int]) -> tuple[str, list[object]]:
    """The per-day sums of ``days``; the city's: its k-anonymous hours' sums, renamed to
    the names of every hour's (days without such an hour left out)."""
    where = ["day_ms >= ?", "day_ms < ?"]
    source = "road_cells_day"
    if q.min_vehicles > 0:
        renamed = ", ".join(f"k_{c} AS {c}" for c in rollup.SUM_COLUMNS)
        source = f"(SELECT day_ms, cell, lat, lon, k_hours, {renamed} FROM road_cells_day) d"
        where.append("k_hours > 0")
    return _cell_part(tx, q, source, where, [days[0], days[1]])


async def tile_events(tx: Tx, q: TileQuery) -> list[EventPoint]:
    """The latest ``q.limit`` events of the period in the bbox."""
    where = ["time_ms >= ?", "time_ms < ?"]
    args: list[object] = [q.since_ms, q.until_ms]
    cells = agg.covering(q.bbox, TILE_CELL_RES, MAX_TILE_CELLS)
    source, order = tx.events_by_time_pos, "time_ms"
    if cells is not None:
        where.append(f"{_parent_sql('h3_12', TILE_CELL_RES)} IN ({', '.join('?' * len(cells))})")
        args += cells
        # "+ 0": no index gives this order, so PostgreSQL does not take the time index
        # for it (its estimate of the box's share of the events is far too high).
        source, order = tx.events_by_cell_time, "time_ms + 0"
    _bbox_sql(q.bbox, where, args)
    if q.type is not None:
        where.append("type = ?")
        args.append(q.type)
    if q.min_vehicles > 0:
        # The city's view: events of k-anonymous cell-hours only, each on its cell's centre.
        where.append(
            "EXISTS (SELECT 1 FROM road_cells c WHERE c.cell = "
            f"{_parent_sql('events.h3_12', 10)} AND c.hour_ms = events.time_ms"
            f" - events.time_ms % {agg.HOUR_MS} AND c.vehicles >= ?)"
        )
        args.append(q.min_vehicles)
    # The cell only for the city's view (both indexes hold it: no row fetched per event).
    cell = "h3_12" if q.min_vehicles > 0 else "0"
    rows = await tx.fetch(
        f"SELECT time_ms, type, lat, lon, {cell} FROM {source}"
        f" WHERE {' AND '.join(where)}"
        f" ORDER BY {order} DESC LIMIT ?",
        *args, q.limit,
    )  # fmt: skip
    if q.min_vehicles > 0:
        centres = [agg.centre(agg.parent(int(r[4]))) for r in rows]
        return [EventPoint(int(r[0]), r[1], c[0], c[1]) for r, c in zip(rows, centres, strict=True)]
    return [EventPoint(int(r[0]), r[1], float(r[2]), float(r[3])) for r in rows]


ROAD_EDGE_FIELDS: Final = ("a", "b", "passes")
if tuple(f.name for f in dataclasses.fields(RoadEdge)) != ROAD_EDGE_FIELDS or hasattr(
    RoadEdge, "__post_init__"
):
    raise ImportError("RoadEdge changed: update reads.road_edges")


def road_edges(columns: Sequence[Sequence[int]]) -> list[RoadEdge]:
    """``RoadEdge(a=c[0][i], b=c[1][i], passes=c[2][i])`` for each row i, built column by
    column as ``cell_hours`` does: a city-zoom roads tile reads ~10^4 rows, and one
    constructor call per row (with the rows' own objects) was a tenth of its time."""
    edges: list[RoadEdge] = list(map(object.__new__, repeat(RoadEdge, len(columns[0]))))
    for name, column in zip(ROAD_EDGE_FIELDS, columns, strict=True):
        deque(map(getattr(RoadEdge, name).__set__, edges, column), maxlen=0)
    return edges


async def tile_roads(tx: Tx, q: TileQuery) -> list[RoadEdge]:
    """The stored road edges in the bbox with both ends moved to their res-``q.res``
    parents; edges inside one parent fall away, parallel ones add up. A resolution of
    ``roads.ROLLUP_RES`` is read grouped already (``fleet_road_rollup``, one index range;
    the bbox tests a fix on one of the child edges), the stored res 12 from the edges."""
    where: list[str] = []
    args: list[object] = []
    _bbox_sql(q.bbox, where, args)
    if q.res in roads.ROLLUP_RES:
        # The city's view: only lines of at least k passes (the sums are whole here).
        if q.min_vehicles > 0:
            where.append("passes >= ?")
            args.append(q.min_vehicles)
        columns = await tx.fetch_columns(
            f"SELECT a, b, passes FROM fleet_road_rollup WHERE res = ? AND {' AND '.join(where)}",
            len(ROAD_EDGE_FIELDS), q.res, *args,
        )  # fmt: skip
        return road_edges(columns)
    pa, pb = _parent_sql("a", min(q.res, 12)), _parent_sql("b", min(q.res, 12))
    rows = await tx.fetch(
        f"SELECT {tx.least}(pa, pb), {tx.greatest}(pa, pb), SUM(passes) FROM"
        f" (SELECT {pa} AS pa, {pb} AS pb, passes FROM fleet_roads"
        f" WHERE {' AND '.join(where)}) s WHERE pa <> pb GROUP BY 1, 2",
        *args,
    )  # fmt: skip
    return [RoadEdge(int(r[0]), int(r[1]), int(r[2])) for r in rows]


async def extent(tx: Tx) -> BBox | None:
    row = await fetchrow(tx, "SELECT MIN(lon), MIN(lat), MAX(lon), MAX(lat) FROM fleet_roads")
    if row is None or row[0] is None:
        return None
    return (float(row[0]), float(row[1]), float(row[2]), float(row[3]))


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
