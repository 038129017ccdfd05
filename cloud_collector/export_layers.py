"""What ``cloud-collector export`` writes, independent of the file format: two layers
(events, road conditions), their columns, and their rows with the geometry as WKB
(ISO/OGC well-known binary, little-endian, 2D, WGS 84 longitude/latitude).

Events are the city's view (as in the OGC API): located events, without vehicle id,
epoch or seq; their attributes as one JSON text column.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import h3

from cloud_collector import geojson
from cloud_collector.errors import CollectorError
from cloud_collector.store.base import HIDDEN_EVENT_KEYS, CellHour, StoredEvent

# Column kinds: what each writer maps to its own types.
INT: Final = "int"
REAL: Final = "real"
TEXT: Final = "text"
TIME: Final = "time"  # ms since the Unix epoch, UTC

Value = int | float | str | None
# Distinct cells whose geometry is kept (a city has some 10^4 to 10^5 res-10 cells with
# data; about 200 bytes each).
CELL_CACHE: Final = 65_536
# (min_lon, min_lat, max_lon, max_lat)
Box = tuple[float, float, float, float]


class ExportError(CollectorError):
    """An export that cannot be written (a missing optional dependency, a file that exists)."""


@dataclass(frozen=True, slots=True)
class Layer:
    name: str
    geometry_type: str  # "Point" or "Polygon"
    columns: tuple[tuple[str, str], ...]  # (name, kind), without the geometry


@dataclass(frozen=True, slots=True)
class Row:
    wkb: bytes
    box: Box
    values: tuple[Value, ...]


EVENTS_LAYER: Final = Layer(
    "events",
    "Point",
    (("event_id", INT), ("time", TIME), ("type", TEXT), ("fleet", TEXT), ("speed_kmh", REAL),
     ("bus", TEXT), ("can_id", INT), ("h3", TEXT), ("attrs", TEXT)),
)  # fmt: skip
ROAD_LAYER: Final = Layer(
    "road_conditions",
    "Polygon",
    (("h3", TEXT), ("hour", TIME), ("counts", TEXT), ("exposure", INT), ("hotspot_rate", REAL),
     ("mean_speed_kmh", REAL), ("wipers_share", REAL), ("failsafe_share", REAL),
     ("lane_quality_share", REAL)),
)  # fmt: skip


def point_wkb(lon: float, lat: float) -> bytes:
    return struct.pack("<BIdd", 1, 1, lon, lat)


def polygon_wkb(ring: Sequence[tuple[float, float]]) -> bytes:
    """One closed exterior ring of (lon, lat)."""
    head = struct.pack("<BIII", 1, 3, 1, len(ring))
    return head + b"".join(struct.pack("<dd", x, y) for x, y in ring)


def event_row(e: StoredEvent) -> Row:
    assert e.lat is not None
    assert e.lon is not None
    attrs = {k: v for k, v in sorted(e.attrs.items()) if k not in HIDDEN_EVENT_KEYS}
    return Row(
        point_wkb(e.lon, e.lat),
        (e.lon, e.lat, e.lon, e.lat),
        (e.id, e.time_ms, e.type, e.fleet, e.speed_kmh, e.source_bus, e.source_id,
         None if e.h3_12 is None else h3.int_to_str(e.h3_12), json.dumps(attrs)),
    )  # fmt: skip


def cell_ring(cell: int) -> list[tuple[float, float]]:
    """The cell's boundary as a closed counter-clockwise ring of (lon, lat)."""
    (ring,) = geojson.cell_polygon(cell)["coordinates"]
    return [(float(x), float(y)) for x, y in ring]


@lru_cache(maxsize=CELL_CACHE)
def cell_geometry(cell: int) -> tuple[bytes, Box]:
    """The cell's polygon as WKB and its box. Cached: a cell recurs in every hour it has
    data, and its boundary costs more than the rest of a row."""
    ring = cell_ring(cell)
    xs, ys = [x for x, _ in ring], [y for _, y in ring]
    return polygon_wkb(ring), (min(xs), min(ys), max(xs), max(ys))


def road_row(c: CellHour) -> Row:
    wkb, box = cell_geometry(c.cell)
    return Row(
        wkb,
        box,
        (h3.int_to_str(c.cell), c.hour_ms, json.dumps(dict(sorted(c.counts.items()))),
         c.exposure, c.hotspot_rate, c.mean_speed_kmh, c.wipers_share, c.failsafe_share,
         c.lane_quality_share),
    )  # fmt: skip
