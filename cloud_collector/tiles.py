"""Vector tiles: tile arithmetic, the H3 resolution per zoom, and Mapbox Vector Tile
encoding of store rows; pure functions (no I/O).

Tiles are addressed as XYZ (Web Mercator, y down from the north, as MapLibre asks) with
512-pixel tiles in mind: cells are aggregated to the H3 resolution whose hexagons are
about 10 to 40 pixels across at that zoom (``CELL_RES``), the roads one resolution finer
than that by two (``road_res``). Geometry is in tile coordinates, ``EXTENT`` units per
tile side, y down.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import h3
import mapbox_vector_tile
from shapely.geometry import LineString, Point, Polygon

from cloud_collector.store.base import BBox, CellTotals, EventPoint, RoadEdge

EXTENT: Final = 4096
MAX_ZOOM: Final = 16
# H3 resolution of the road-condition cells per zoom (index = zoom): about 10-40 px per
# hexagon on a 512 px tile at Seoul's latitude; zoom 13 and beyond: the stored res 10.
CELL_RES: Final = (2, 2, 3, 3, 4, 4, 5, 6, 6, 7, 8, 8, 9, 10, 10, 10, 10)
# The stored resolutions: road cells (aggregate.AGG_RES) and road edges (EVENT_RES).
STORED_CELL_RES: Final = 10
STORED_ROAD_RES: Final = 12
# At most this many events per tile (the latest of the period).
MAX_TILE_EVENTS: Final = 4096
LAYERS: Final = ("road_conditions", "events", "roads")
MERCATOR_MAX_LAT: Final = 85.0511287798066

# Field types of each layer (TileJSON ``vector_layers``).
FIELDS: Final[dict[str, dict[str, str]]] = {
    "road_conditions": {
        "cell": "String", "res": "Number", "passes": "Number", "events": "Number",
        "rate": "Number", "wipers_share": "Number", "failsafe_share": "Number",
        "lane_quality_share": "Number", "mean_speed_kmh": "Number", "period": "String",
    },
    "events": {"type": "String", "time_ms": "Number"},
    "roads": {"passes": "Number", "res": "Number"},
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Tile:
    z: int
    x: int
    y: int

    def __post_init__(self) -> None:
        if not 0 <= self.z <= MAX_ZOOM:
            raise ValueError(f"z must be within [0, {MAX_ZOOM}], not {self.z}")
        side = 1 << self.z
        if not (0 <= self.x < side and 0 <= self.y < side):
            raise ValueError(f"x and y must be within [0, {side - 1}] at zoom {self.z}")


def _lon(x: float, z: int) -> float:
    return x / (1 << z) * 360.0 - 180.0


def _lat(y: float, z: int) -> float:
    n = math.pi * (1 - 2 * y / (1 << z))
    return math.degrees(math.atan(math.sinh(n)))


def tile_bbox(t: Tile) -> BBox:
    """(min_lon, min_lat, max_lon, max_lat) of the tile."""
    return (_lon(t.x, t.z), _lat(t.y + 1, t.z), _lon(t.x + 1, t.z), _lat(t.y, t.z))


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """The (x, y) of the zoom-``z`` tile holding the point."""
    lat = max(-MERCATOR_MAX_LAT, min(MERCATOR_MAX_LAT, lat))
    n = 1 << z
    x = int((lon + 180.0) / 360.0 * n)
    rad = math.radians(lat)
    y = int((1 - math.asinh(math.tan(rad)) / math.pi) / 2 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def cell_res(z: int) -> int:
    return CELL_RES[min(z, MAX_ZOOM)]


def road_res(z: int) -> int:
    return min(STORED_ROAD_RES, cell_res(z) + 2)


def padded(bbox: BBox, res: int, edges: float = 2.0) -> BBox:
    """``bbox`` grown by ``edges`` average edge lengths of a res-``res`` hexagon, so that
    every stored row of a parent cell that touches ``bbox`` lies inside it."""
    pad_km = edges * float(h3.average_hexagon_edge_length(res, unit="km"))
    mid = math.radians((bbox[1] + bbox[3]) / 2)
    dlat = pad_km / 111.32
    dlon = min(pad_km / (111.32 * max(math.cos(mid), 0.01)), 360.0)
    return (
        max(bbox[0] - dlon, -180.0), max(bbox[1] - dlat, -90.0),
        min(bbox[2] + dlon, 180.0), min(bbox[3] + dlat, 90.0),
    )  # fmt: skip


class _Projector:
    """Lon/lat to this tile's integer coordinates (y down)."""

    def __init__(self, t: Tile) -> None:
        self._scale = (1 << t.z) * EXTENT
        self._x0 = t.x * EXTENT
        self._y0 = t.y * EXTENT

    def __call__(self, lon: float, lat: float) -> tuple[int, int]:
        lat = max(-MERCATOR_MAX_LAT, min(MERCATOR_MAX_LAT, lat))
        x = (lon + 180.0) / 360.0 * self._scale - self._x0
        s = math.sin(math.radians(lat))
        y = (0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)) * self._scale - self._y0
        return round(x), round(y)


@lru_cache(maxsize=65_536)
def _boundary(cell: int) -> tuple[tuple[float, float], ...]:
    return tuple((lng, lat) for lat, lng in h3.cell_to_boundary(h3.int_to_str(cell)))


@lru_cache(maxsize=65_536)
def _centre(cell: int) -> tuple[float, float]:
    lat, lng = h3.cell_to_latlng(h3.int_to_str(cell))
    return float(lng), float(lat)


def _inside(x: int, y: int, margin: int) -> bool:
    return -margin <= x <= EXTENT + margin and -margin <= y <= EXTENT + margin


def _hexagon(cell: int, project: _Projector) -> Polygon | None:
    ring = [project(lng, lat) for lng, lat in _boundary(cell)]
    # MVT exterior rings have a positive area in tile coordinates (y down).
    area = sum(
        x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True)
    )
    if area == 0:
        return None
    if area < 0:
        ring.reverse()
    return Polygon(ring)


def _share(n: int, passes: int) -> float | None:
    return n / passes if passes else None


def cell_properties(c: CellTotals, res: int, period: str) -> dict[str, Any]:
    """A road-condition feature's properties; a measure without passes is left out (an
    MVT value cannot be null)."""
    props: dict[str, Any] = {
        "cell": h3.int_to_str(c.cell), "res": res, "passes": c.passes, "events": c.events,
        "period": period,
    }  # fmt: skip
    measures = {
        "rate": None if not c.passes else 100.0 * c.events / c.passes,
        "wipers_share": _share(c.wipers, c.passes),
        "failsafe_share": _share(c.failsafe, c.passes),
        "lane_quality_share": _share(c.lanes, c.passes),
        "mean_speed_kmh": c.speed_sum / c.speed_n if c.speed_n else None,
    }
    props.update((k, v) for k, v in measures.items() if v is not None)
    return props


def cell_features(
    t: Tile, cells: Iterable[CellTotals], res: int, period: str
) -> list[dict[str, Any]]:
    project = _Projector(t)
    margin = EXTENT // 8
    out = []
    for c in cells:
        if not _inside(*project(*_centre(c.cell)), margin=EXTENT):
            continue
        shape = _hexagon(c.cell, project)
        if shape is None or not any(_inside(x, y, margin) for x, y in shape.exterior.coords):
            continue
        out.append({"geometry": shape, "properties": cell_properties(c, res, period)})
    return out


def event_features(t: Tile, events: Iterable[EventPoint]) -> list[dict[str, Any]]:
    project = _Projector(t)
    out = []
    for e in events:
        x, y = project(e.lon, e.lat)
        if _inside(x, y, 0):
            props = {"type": e.type, "time_ms": e.time_ms}
            out.append({"geometry": Point(x, y), "properties": props})
    return out


def road_features(t: Tile, edges: Iterable[RoadEdge], res: int) -> list[dict[str, Any]]:
    """Each edge as a line between the centres of its two cells."""
    project = _Projector(t)
    margin = EXTENT // 8
    out = []
    for e in edges:
        a, b = project(*_centre(e.a)), project(*_centre(e.b))
        if a == b or not (_inside(*a, margin=margin) or _inside(*b, margin=margin)):
            continue
        out.append({"geometry": LineString([a, b]), "properties": {"passes": e.passes, "res": res}})
    return out


def encode(layer: str, features: Sequence[dict[str, Any]]) -> bytes:
    """One MVT layer; b"" when it has no feature (an empty tile)."""
    if not features:
        return b""
    options = {"extents": EXTENT, "y_coord_down": True, "check_winding_order": False}
    data = mapbox_vector_tile.encode(
        [{"name": layer, "features": features}], default_options=options
    )
    return bytes(data)
