"""The roads the fleet drove (table ``fleet_roads``, migration 0009): the edges between
neighbouring H3 res-12 cells that consecutive GNSS fixes of one batch moved across.

``edges`` is pure; ``store_edges`` is ingest's one upsert per batch, rows in key order
(several vehicles' transactions update shared rows: a fixed order cannot deadlock).
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
