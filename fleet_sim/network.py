"""A synthetic road network over a city's extent: a grid of side streets with every
``ARTERIAL_EVERY``-th line an arterial, signalised where two arterials cross.

Pure: positions are metres east/north of the south-west corner; ``to_latlon`` maps them
onto the city's extent (an equirectangular projection, exact enough over 20 km).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

M_PER_DEG_LAT: Final = 111_320.0
SPACING_M: Final = 250.0  # between parallel streets
ARTERIAL_EVERY: Final = 4  # every 4th street is an arterial (1 km apart)
ARTERIAL_KMH: Final = 60.0
SIDE_KMH: Final = 30.0
SIGNAL_CYCLE_S: Final = 90
GREEN_S: Final = 40  # then amber and all-red until half the cycle

Node = tuple[int, int]  # (row, column): row counts north, column east


@dataclass(frozen=True, slots=True)
class Extent:
    south: float
    west: float
    north: float
    east: float

    @property
    def m_per_deg_lon(self) -> float:
        return M_PER_DEG_LAT * math.cos(math.radians((self.south + self.north) / 2))

    @property
    def width_m(self) -> float:
        return (self.east - self.west) * self.m_per_deg_lon

    @property
    def height_m(self) -> float:
        return (self.north - self.south) * M_PER_DEG_LAT


DAEGU: Final = Extent(35.80, 128.50, 35.95, 128.70)


@dataclass(frozen=True, slots=True)
class Network:
    extent: Extent
    rows: int
    cols: int

    @classmethod
    def grid(cls, extent: Extent = DAEGU) -> Network:
        rows = int(extent.height_m // SPACING_M) + 1
        cols = int(extent.width_m // SPACING_M) + 1
        return cls(extent, rows, cols)

    def xy(self, node: Node) -> tuple[float, float]:
        return node[1] * SPACING_M, node[0] * SPACING_M

    def to_latlon(self, x: float, y: float) -> tuple[float, float]:
        e = self.extent
        return e.south + y / M_PER_DEG_LAT, e.west + x / e.m_per_deg_lon

    def to_xy(self, lat: float, lon: float) -> tuple[float, float]:
        e = self.extent
        return (lon - e.west) * e.m_per_deg_lon, (lat - e.south) * M_PER_DEG_LAT

    def is_signal(self, node: Node) -> bool:
        return node[0] % ARTERIAL_EVERY == 0 and node[1] % ARTERIAL_EVERY == 0

    def arterial_nodes(self) -> list[Node]:
        return [
            (r, c)
            for r in range(0, self.rows, ARTERIAL_EVERY)
            for c in range(0, self.cols, ARTERIAL_EVERY)
        ]

    def random_node(self, rng: random.Random) -> Node:
        return rng.randrange(self.rows), rng.randrange(self.cols)

    def limit_kmh(self, a: Node, b: Node) -> float:
        """The speed limit of the street from ``a`` to its neighbour ``b``."""
        on_row = a[0] == b[0]
        line = a[0] if on_row else a[1]
        return ARTERIAL_KMH if line % ARTERIAL_EVERY == 0 else SIDE_KMH

    def route(self, start: Node, end: Node) -> list[Node]:
        """Side street to the nearest arterial, arterials most of the way, side street to
        the end: the way a taxi driver goes across town."""
        r_art = self._arterial_line(start[0], self.rows)
        c_art = self._arterial_line(end[1], self.cols)
        path = [start]
        for target in ((r_art, start[1]), (r_art, c_art), (end[0], c_art), end):
            path.extend(_straight(path[-1], target))
        return path

    def _arterial_line(self, index: int, size: int) -> int:
        below = index - index % ARTERIAL_EVERY
        above = below + ARTERIAL_EVERY
        if above < size and above - index < index - below:
            return above
        return below

    def green(self, node: Node, heading_ns: bool, t_s: float) -> bool:
        """Whether a taxi heading north/south (else east/west) may cross ``node`` now."""
        offset = (node[0] * 7 + node[1] * 13) % SIGNAL_CYCLE_S
        phase = (t_s + offset) % SIGNAL_CYCLE_S
        half = SIGNAL_CYCLE_S / 2
        return phase < GREEN_S if heading_ns else half <= phase < half + GREEN_S


def _straight(a: Node, b: Node) -> list[Node]:
    """The nodes after ``a`` up to ``b`` along one row or column (``a`` and ``b`` share one)."""
    if a[0] == b[0]:
        step = 1 if b[1] > a[1] else -1
        return [(a[0], c) for c in range(a[1] + step, b[1] + step, step)] if a != b else []
    step = 1 if b[0] > a[0] else -1
    return [(r, a[1]) for r in range(a[0] + step, b[0] + step, step)]


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def point_segment_m(
    p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]
) -> float:
    """Distance from ``p`` to the segment ``a``-``b`` (metres, plane)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    length2 = dx * dx + dy * dy
    if length2 == 0:
        return distance_m(p, a)
    t = max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / length2))
    return distance_m(p, (a[0] + t * dx, a[1] + t * dy))
