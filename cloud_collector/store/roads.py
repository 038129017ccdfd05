"""The roads the fleet drove (table ``fleet_roads``, migration 0009): the edges between
neighbouring H3 res-12 cells that consecutive GNSS fixes of one batch moved across.

The same edges grouped to each coarser resolution a roads tile shows (``ROLLUP_RES``,
table ``fleet_road_rollup``, migration 0012): both ends moved to their res-r parents,
edges inside one parent left out, parallel ones added up. A city-zoom tile then reads
about a thousand pre-grouped rows instead of grouping ~10^5 stored edges per request.

``edges`` and ``rollup`` are pure; ``store_edges`` is ingest's upsert per batch (the
edges, then their roll-up), rows in key order (several vehicles' transactions update
shared rows: a fixed order, one table after the other, cannot deadlock).
An edge across two batches of a vehicle is not recorded (one short step per batch).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from cloud_collector.store import aggregate as agg
from protocol.records import GnssFix

if TYPE_CHECKING:
    from cloud_collector.store.engine import Tx

# Consecutive fixes further apart in time are not joined (a gap in the trace).
ROAD_GAP_MS: Final = 10_000
# The resolutions of ``fleet_road_rollup``: every one below the stored res 12 that
# ``tiles.road_res`` gives a zoom (3 at zoom 0 .. 11 at zoom 13; a test holds them equal).
ROLLUP_RES: Final = tuple(range(3, agg.EVENT_RES))


@dataclass(slots=True)
class EdgeSum:
    lat: float
    lon: float
    passes: int
    last_ms: int


def edges(fixes: Iterable[GnssFix]) -> dict[tuple[int, int], EdgeSum]:
    """The (a, b) edges (a < b, res-12 cells) of a trace, with their counts."""
    out: dict[tuple[int, int], EdgeSum] = {}
    prev: tuple[int, int] | None = None  # (time_ms, cell)
    for f in sorted(fixes, key=lambda f: f.time_ms):
        cell = agg.cell_at(f.lat, f.lon)
        if prev is not None and prev[1] != cell and f.time_ms - prev[0] <= ROAD_GAP_MS:
            key = (min(prev[1], cell), max(prev[1], cell))
            found = out.get(key)
            if found is None:
                out[key] = EdgeSum(float(f.lat), float(f.lon), 1, f.time_ms)
            else:
                found.passes += 1
                found.last_ms = max(found.last_ms, f.time_ms)
        prev = (f.time_ms, cell)
    return out


def rollup(found: dict[tuple[int, int], EdgeSum]) -> dict[tuple[int, int, int], EdgeSum]:
    """The (res, a, b) edges of ``found`` at each of ``ROLLUP_RES`` (a < b, res-r parents;
    edges within one parent left out), passes added up; the position is that of the first
    edge in key order (a fix on one of the parents' child edges: the tile's bbox test)."""
    out: dict[tuple[int, int, int], EdgeSum] = {}
    ordered = sorted(found.items())
    for res in ROLLUP_RES:
        keep, fill = agg.parent_bits(res)
        for (a, b), e in ordered:
            pa, pb = (a & keep) | fill, (b & keep) | fill
            if pa == pb:
                continue
            key = (res, min(pa, pb), max(pa, pb))
            have = out.get(key)
            if have is None:
                out[key] = EdgeSum(e.lat, e.lon, e.passes, e.last_ms)
            else:
                have.passes += e.passes
    return out


def rollup_rebuild_sql(least: str, greatest: str) -> str:
    """SQL filling an empty ``fleet_road_rollup`` from ``fleet_roads`` (what migration
    0012 runs; the bench's loader after a bulk copy): the same grouping as ``rollup``, the
    position the least latitude and longitude of the child edges."""
    values = ", ".join(f"({r}, {k}, {f})" for r in ROLLUP_RES for k, f in [agg.parent_bits(r)])
    return (
        f"WITH r (res, keep, fill) AS (VALUES {values})"
        " INSERT INTO fleet_road_rollup (res, a, b, lat, lon, passes)"
        f" SELECT res, {least}(pa, pb), {greatest}(pa, pb), MIN(lat), MIN(lon), SUM(passes)"
        " FROM (SELECT r.res, (f.a & r.keep) | r.fill AS pa, (f.b & r.keep) | r.fill AS pb,"
        " f.lat, f.lon, f.passes FROM fleet_roads f CROSS JOIN r) s"
        " WHERE pa <> pb GROUP BY 1, 2, 3"
    )


async def store_edges(tx: Tx, fixes: Iterable[GnssFix]) -> None:
    found = edges(fixes)
    if not found:
        return
    await tx.executemany(
        "INSERT INTO fleet_roads (a, b, lat, lon, passes, last_ms) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (a, b) DO UPDATE SET passes = fleet_roads.passes + excluded.passes,"
        f" last_ms = {tx.greatest}(fleet_roads.last_ms, excluded.last_ms)",
        [(a, b, e.lat, e.lon, e.passes, e.last_ms) for (a, b), e in sorted(found.items())],
    )
    coarse = rollup(found)
    if coarse:
        await tx.executemany(
            "INSERT INTO fleet_road_rollup (res, a, b, lat, lon, passes)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (res, a, b) DO UPDATE"
            " SET passes = fleet_road_rollup.passes + excluded.passes",
            [(r, a, b, e.lat, e.lon, e.passes) for (r, a, b), e in sorted(coarse.items())],
        )
