"""Vector tiles: tile arithmetic, the H3 resolution per zoom, and Mapbox Vector Tile
encoding of store rows; pure functions (no I/O).

Tiles are addressed as XYZ (Web Mercator, y down from the north, as MapLibre asks) with
512-pixel tiles in mind: cells are aggregated to the H3 resolution whose hexagons are
about 10 to 40 pixels across at that zoom (``CELL_RES``), the roads one resolution finer
(``road_res``). Geometry is in tile coordinates, ``EXTENT`` units per
tile side, y down.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import h3
from mapbox_vector_tile.Mapbox import vector_tile_pb2

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
    """One finer than the cells; from zoom 14 on the stored res 12."""
    return min(STORED_ROAD_RES, cell_res(z) + 1 + max(0, z - 13))


# Lines with an end this far outside a tile (tile units) are still drawn in it, so that a
# street crossing the tile's border is drawn on both sides of it.
ROAD_MARGIN: Final = EXTENT // 8
# A roll-up row's position (a fix on one of its child edges) lies within about 3 average
# edge lengths of either end's centre (the H3 children of a cell reach past its hexagon).
ROLLUP_PAD_EDGES: Final = 5.0


def road_bbox(t: Tile, res: int) -> BBox:
    """The box the stored road rows at ``res`` are read from for tile ``t``: the tile
    padded as the cells are at the stored resolution; below it (the roll-up) by
    ``ROLLUP_PAD_EDGES``, so that every line with an end in the tile has all its passes
    (lines wholly in the margin: those near the tile)."""
    if res >= STORED_ROAD_RES:
        return padded(tile_bbox(t), res)
    return padded(tile_bbox(t), res, ROLLUP_PAD_EDGES)


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


def _mercator(lon: float, lat: float) -> tuple[float, float]:
    """Web Mercator in world units: (0, 0) the north-west corner, (1, 1) the south-east."""
    lat = max(-MERCATOR_MAX_LAT, min(MERCATOR_MAX_LAT, lat))
    s = math.sin(math.radians(lat))
    return (lon + 180.0) / 360.0, 0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)


class _Projector:
    """World units to this tile's integer coordinates (y down)."""

    def __init__(self, t: Tile) -> None:
        self._scale = (1 << t.z) * EXTENT
        self._x0 = t.x * EXTENT
        self._y0 = t.y * EXTENT

    def __call__(self, world: tuple[float, float]) -> tuple[int, int]:
        return round(world[0] * self._scale) - self._x0, round(world[1] * self._scale) - self._y0


@lru_cache(maxsize=262_144)
def _boundary(cell: int) -> tuple[tuple[float, float], ...]:
    return tuple(_mercator(lng, lat) for lat, lng in h3.cell_to_boundary(h3.int_to_str(cell)))


@lru_cache(maxsize=262_144)
def _centre(cell: int) -> tuple[float, float]:
    lat, lng = h3.cell_to_latlng(h3.int_to_str(cell))
    return _mercator(lng, lat)


def _inside(p: tuple[int, int], margin: int) -> bool:
    return -margin <= p[0] <= EXTENT + margin and -margin <= p[1] <= EXTENT + margin


# MVT geometry types and commands (vector tile specification 2.1, section 4.3).
POINT: Final = 1
LINESTRING: Final = 2
POLYGON: Final = 3
_MOVE_TO: Final = 1
_LINE_TO: Final = 2
_CLOSE_PATH: Final = 7
# (geometry type, command integers, properties)
Feature = tuple[int, list[int], dict[str, Any]]


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 31)


def _path(points: Sequence[tuple[int, int]]) -> list[int]:
    """MoveTo the first point, LineTo the others (relative, zigzag-encoded)."""
    (x0, y0), rest = points[0], points[1:]
    out = [_MOVE_TO | (1 << 3), _zigzag(x0), _zigzag(y0), _LINE_TO | (len(rest) << 3)]
    for x, y in rest:
        out += (_zigzag(x - x0), _zigzag(y - y0))
        x0, y0 = x, y
    return out


def _ring(points: list[tuple[int, int]]) -> list[int] | None:
    """A closed polygon ring (exterior: positive area with y down), or None when it
    collapses at this zoom."""
    ring = [p for i, p in enumerate(points) if p != points[i - 1]]
    if len(ring) < 3:
        return None
    pairs = zip(ring, ring[1:] + ring[:1], strict=True)
    area = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in pairs)
    if area == 0:
        return None
    if area < 0:
        ring.reverse()
    return [*_path(ring), _CLOSE_PATH | (1 << 3)]


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


def cell_features(t: Tile, cells: Iterable[CellTotals], res: int, period: str) -> list[Feature]:
    project = _Projector(t)
    margin = EXTENT // 8
    out = []
    for c in cells:
        if not _inside(project(_centre(c.cell)), EXTENT):
            continue
        points = [project(p) for p in _boundary(c.cell)]
        if not any(_inside(p, margin) for p in points):
            continue
        geometry = _ring(points)
        if geometry is not None:
            out.append((POLYGON, geometry, cell_properties(c, res, period)))
    return out


def event_features(t: Tile, events: Iterable[EventPoint]) -> list[Feature]:
    """Each event inside the tile as a point (the projection and the test written out in
    the loop, as in ``road_features``: up to ``MAX_TILE_EVENTS`` per tile)."""
    scale = (1 << t.z) * EXTENT
    x0, y0 = t.x * EXTENT, t.y * EXTENT
    out: list[Feature] = []
    for e in events:
        wx, wy = _mercator(e.lon, e.lat)
        x, y = round(wx * scale) - x0, round(wy * scale) - y0
        if 0 <= x <= EXTENT and 0 <= y <= EXTENT:
            geometry = [_MOVE_TO | (1 << 3), (x << 1) ^ (x >> 31), (y << 1) ^ (y >> 31)]
            out.append((POINT, geometry, {"type": e.type, "time_ms": e.time_ms}))
    return out


def road_features(t: Tile, edges: Iterable[RoadEdge], res: int) -> list[Feature]:
    """Each edge as a line between the centres of its two cells (those with an end in
    the tile or its ``ROAD_MARGIN``). The projection, the margin test and ``_path`` of
    two points are written out in the loop: a city-zoom tile has ~10^4 edges, and the
    calls per edge were half of a cold tile's time; the result is the same."""
    scale = (1 << t.z) * EXTENT
    x0, y0 = t.x * EXTENT, t.y * EXTENT
    lo, hi = -ROAD_MARGIN, EXTENT + ROAD_MARGIN
    out: list[Feature] = []
    for e in edges:
        a, b = _centre(e.a), _centre(e.b)
        ax, ay = round(a[0] * scale) - x0, round(a[1] * scale) - y0
        bx, by = round(b[0] * scale) - x0, round(b[1] * scale) - y0
        if (ax == bx and ay == by) or not (
            (lo <= ax <= hi and lo <= ay <= hi) or (lo <= bx <= hi and lo <= by <= hi)
        ):
            continue
        dx, dy = bx - ax, by - ay
        move = [_MOVE_TO | (1 << 3), (ax << 1) ^ (ax >> 31), (ay << 1) ^ (ay >> 31)]
        line = [_LINE_TO | (1 << 3), (dx << 1) ^ (dx >> 31), (dy << 1) ^ (dy >> 31)]
        out.append((LINESTRING, move + line, {"passes": e.passes, "res": res}))
    return out


def _value(layer: Any, v: object) -> None:
    value = layer.values.add()
    if isinstance(v, bool):
        value.bool_value = v
    elif isinstance(v, int):
        value.sint_value = v
    elif isinstance(v, float):
        value.double_value = v
    else:
        value.string_value = str(v)


def encode(layer_name: str, features: Sequence[Feature]) -> bytes:
    """One MVT layer (version 2) written with mapbox-vector-tile's protobuf message, the
    geometry commands built here; b"" when there is no feature (an empty tile)."""
    if not features:
        return b""
    tile = vector_tile_pb2.tile()
    layer = tile.layers.add()
    layer.name, layer.version, layer.extent = layer_name, 2, EXTENT
    keys: dict[str, int] = {}
    values: dict[tuple[type, object], int] = {}
    add = layer.features.add
    for gtype, geometry, props in features:
        tags: list[int] = []
        for k, v in props.items():
            key = keys.get(k)
            if key is None:
                key = keys[k] = len(keys)
                layer.keys.append(k)
            index = values.get((type(v), v))
            if index is None:
                index = values[(type(v), v)] = len(values)
                _value(layer, v)
            tags += (key, index)
        add(type=gtype, geometry=geometry, tags=tags)  # one call: fields set in C
    return bytes(tile.SerializeToString())
