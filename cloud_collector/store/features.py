"""The query side's SQL for feature collections (OGC API - Features, export): keyset
pages of cell-hours and sign clusters, bounded counts and collection extents.

Read-only, same SQL dialect rules as ``engine``. Events page through ``reads.events``
(its cursor is the same ``(time_ms, id)`` key).
"""

from __future__ import annotations

from typing import Final

from cloud_collector.errors import QueryError
from cloud_collector.store.aggregate import HOUR_MS
from cloud_collector.store.base import (
    EVENTS_COLLECTION,
    MAX_EVENT_LIMIT,
    ROAD_COLLECTION,
    SIGNS_COLLECTION,
    BBox,
    CellPage,
    Extent,
    FeatureQuery,
    SignCluster,
    SignPage,
)
from cloud_collector.store.engine import Row, Tx, fetchrow
from cloud_collector.store.reads import CELL_HOUR_COLUMNS, CELL_HOUR_FIELDS, cell_hours

# A cell centre lies up to one res-10 cell radius (~75 m) from the events and passes
# counted in it; extents computed from centres are widened by this much (degrees).
CELL_MARGIN_DEG: Final = 0.001

# What each collection's time filter compares: its interval is [start, end + offset].
# A cell-hour's end is its start plus an hour, compared as "hour_ms >= since - offset" so
# that the (hour_ms, ...) index gives the range (an expression on the column would not).
_TIME: Final = {
    EVENTS_COLLECTION: ("time_ms", "time_ms", 0),
    ROAD_COLLECTION: ("hour_ms", "hour_ms", HOUR_MS - 1),
    SIGNS_COLLECTION: ("first_seen_ms", "last_seen_ms", 0),
}
_TABLE: Final = {
    EVENTS_COLLECTION: "events",
    ROAD_COLLECTION: "road_cells",
    SIGNS_COLLECTION: "sign_clusters",
}
_KEY: Final = {
    EVENTS_COLLECTION: ("time_ms", "id"),
    ROAD_COLLECTION: ("hour_ms", "cell"),
    SIGNS_COLLECTION: ("0", "id"),
}


def _where(collection: str, q: FeatureQuery, *, keyed: bool) -> tuple[str, list[object]]:
    """The WHERE clause (with " WHERE ", or empty) and its arguments."""
    if not 1 <= q.limit <= MAX_EVENT_LIMIT:
        raise QueryError(f"limit must be in [1, {MAX_EVENT_LIMIT}], not {q.limit}")
    where: list[str] = []
    args: list[object] = []
    start, end, offset = _TIME[collection]
    if q.since_ms is not None:
        where.append(f"{end} >= ?")
        args.append(q.since_ms - offset)
    if q.until_ms is not None:
        where.append(f"{start} < ?")
        args.append(q.until_ms)
    box: BBox = q.bbox if q.bbox is not None else (-180.0, -90.0, 180.0, 90.0)
    min_lon, min_lat, max_lon, max_lat = box
    if min_lon > max_lon or min_lat > max_lat:
        raise QueryError(f"bbox {box} is not (min_lon, min_lat, max_lon, max_lat)")
    # Always: events without a position are no features of a map.
    where.append("lat BETWEEN ? AND ? AND lon BETWEEN ? AND ?")
    args += [min_lat, max_lat, min_lon, max_lon]
    if collection == ROAD_COLLECTION and q.min_vehicles > 0:
        where.append("vehicles >= ?")
        args.append(q.min_vehicles)
    if keyed and q.after is not None:
        major, minor = _KEY[collection]
        if major == "0":
            where.append(f"{minor} > ?")
            args.append(q.after[1])
        else:
            # "major >= ?" first: the index range (the OR alone is only a filter).
            where.append(f"{major} >= ? AND ({major} > ? OR ({major} = ? AND {minor} > ?))")
            args += [q.after[0], q.after[0], q.after[0], q.after[1]]
    return " WHERE " + " AND ".join(where), args


async def cell_page(tx: Tx, q: FeatureQuery) -> CellPage:
    """One keyset page of cell-hours: the columns of ``reads.road_conditions``, turned
    into objects column by column (``reads.cell_hours``)."""
    where, args = _where(ROAD_COLLECTION, q, keyed=True)
    columns = await tx.fetch_columns(
        f"SELECT {CELL_HOUR_COLUMNS} FROM road_cells{where} ORDER BY hour_ms, cell LIMIT ?",
        len(CELL_HOUR_FIELDS), *args, q.limit + 1,
    )  # fmt: skip
    cells = cell_hours(columns, None)
    more = len(cells) > q.limit
    del cells[q.limit :]
    return CellPage(cells, (cells[-1].hour_ms, cells[-1].cell) if more else None)


_SIGN_COLUMNS: Final = (
    "id, sign_type, lat, lon, limit_kmh, observations, vehicles, first_seen_ms, last_seen_ms"
)


def _sign(r: Row) -> SignCluster:
    return SignCluster(
        id=int(r[0]), sign_type=int(r[1]), lat=float(r[2]), lon=float(r[3]),
        limit_kmh=None if r[4] is None else int(r[4]), observations=int(r[5]),
        vehicles=int(r[6]), first_seen_ms=int(r[7]), last_seen_ms=int(r[8]),
    )  # fmt: skip


async def sign_page(tx: Tx, q: FeatureQuery) -> SignPage:
    where, args = _where(SIGNS_COLLECTION, q, keyed=True)
    rows = await tx.fetch(
        f"SELECT {_SIGN_COLUMNS} FROM sign_clusters{where} ORDER BY id LIMIT ?", *args, q.limit + 1
    )
    signs = [_sign(r) for r in rows[: q.limit]]
    more = len(rows) > q.limit
    return SignPage(signs, (0, signs[-1].id) if more else None)


async def count_features(tx: Tx, collection: str, q: FeatureQuery, cap: int) -> int | None:
    """The number of matches, reading at most ``cap + 1`` of them."""
    if collection not in _TABLE:
        raise QueryError(f"unknown collection {collection!r}")
    where, args = _where(collection, q, keyed=False)
    row = await fetchrow(
        tx,
        f"SELECT COUNT(*) FROM (SELECT 1 FROM {_TABLE[collection]}{where} LIMIT ?) AS m",
        *args, cap + 1,
    )  # fmt: skip
    assert row is not None
    n = int(row[0])
    return None if n > cap else n


async def _extent(tx: Tx, table: str, first: str, last: str, margin: float) -> Extent:
    row = await fetchrow(
        tx,
        f"SELECT MIN(lon), MIN(lat), MAX(lon), MAX(lat), MIN({first}), MAX({last})"
        f" FROM {table} WHERE lat IS NOT NULL AND lon IS NOT NULL",
    )
    assert row is not None
    if row[0] is None:
        return Extent(None, None, None)
    box = (
        max(float(row[0]) - margin, -180.0),
        max(float(row[1]) - margin, -90.0),
        min(float(row[2]) + margin, 180.0),
        min(float(row[3]) + margin, 90.0),
    )
    return Extent(box, int(row[4]), int(row[5]))


async def extents(tx: Tx) -> dict[str, Extent]:
    """Cell-hours and sign clusters from their own rows. Events: the times from the time
    index, and the cells' box for space (every located event is counted in a cell, and
    scanning every event's position would cost a full read of the largest table)."""
    road = await _extent(tx, "road_cells", "hour_ms", f"hour_ms + {HOUR_MS - 1}", CELL_MARGIN_DEG)
    signs = await _extent(tx, "sign_clusters", "first_seen_ms", "last_seen_ms", 0.0)
    row = await fetchrow(tx, "SELECT MIN(time_ms), MAX(time_ms) FROM events")
    assert row is not None
    located = row[0] is not None and road.bbox is not None
    events = Extent(
        road.bbox if located else None,
        None if row[0] is None else int(row[0]),
        None if row[1] is None else int(row[1]),
    )
    return {EVENTS_COLLECTION: events, ROAD_COLLECTION: road, SIGNS_COLLECTION: signs}
