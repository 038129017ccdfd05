"""The planted truth: hazard sites, worn lane markings, a rain period, speed signs.

Written as ``truth.json`` next to a run's output (schema in docs/road-conditions.md) and
read back by ``--truth FILE`` and ``score``. Pure, apart from the JSON file helpers.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from fleet_sim.network import (
    ARTERIAL_EVERY,
    SPACING_M,
    Extent,
    Network,
    Node,
    distance_m,
)
from protocol.contracts import FCW, HARSH_BRAKING, LDW_LEFT, LDW_RIGHT, PCW

SCHEMA: Final = 1
UTC_OFFSET_H: Final = 9  # Korea Standard Time
HOUR_MS: Final = 3_600_000
# Situations per 1,000 km of the background (model.BACKGROUND_PER_1000_KM, all of which
# count as situations) over about 150 m, the width of an aggregation cell.
BACKGROUND_PER_PASS: Final = 33.5 / 1e6 * 150
SITE_TYPES: Final = (FCW.name, PCW.name, HARSH_BRAKING.name, LDW_LEFT.name, LDW_RIGHT.name)
SITE_SPACING_M: Final = 600.0
HUBS: Final = 8
CORE_M: Final = 3_000.0
SPEED_SIGN_LIMITS: Final = (30, 50, 60)


class TruthError(ValueError):
    """A truth file that cannot be read: the key and what was wrong."""


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    event_type: str
    lat: float
    lon: float
    kind: str  # "intersection" or "segment"
    rate_per_pass: float  # probability of a situation per pass while active
    local_hours: tuple[int, int]  # [from, to) local time; (0, 24) all day

    def rate_at(self, t_ms: int, utc_offset_h: int) -> float:
        hour = (t_ms // HOUR_MS + utc_offset_h) % 24
        a, b = self.local_hours
        return self.rate_per_pass if a <= hour < b else 0.0


@dataclass(frozen=True, slots=True)
class Stretch:
    id: str
    lat1: float
    lon1: float
    lat2: float
    lon2: float


@dataclass(frozen=True, slots=True)
class Rain:
    lat: float
    lon: float
    radius_m: float
    start_ms: int
    end_ms: int

    def covers(self, net: Network, x: float, y: float, t_ms: int) -> bool:
        if not self.start_ms <= t_ms < self.end_ms:
            return False
        return distance_m((x, y), net.to_xy(self.lat, self.lon)) <= self.radius_m


@dataclass(frozen=True, slots=True)
class Sign:
    id: str
    lat: float
    lon: float
    limit_kmh: int
    sign_type: int


@dataclass(frozen=True)
class Truth:
    seed: int
    start_ms: int
    hours: float
    extent: Extent
    hubs: tuple[tuple[float, float], ...]
    sites: tuple[Site, ...]
    worn_lanes: tuple[Stretch, ...]
    rain: Rain | None
    signs: tuple[Sign, ...]
    tunnels: tuple[Stretch, ...] = ()
    outage: tuple[int, int] | None = None  # simulated seconds [from, to) of the city-wide outage
    utc_offset_h: int = UTC_OFFSET_H
    hazard_factor: float = 0.0
    schema: int = SCHEMA

    def network(self) -> Network:
        return Network.grid(self.extent)

    def hub_nodes(self) -> tuple[Node, ...]:
        net = self.network()
        return tuple(snap_node(net, lat, lon) for lat, lon in self.hubs)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def snap_node(net: Network, lat: float, lon: float) -> Node:
    x, y = net.to_xy(lat, lon)
    r = min(max(round(y / SPACING_M), 0), net.rows - 1)
    c = min(max(round(x / SPACING_M), 0), net.cols - 1)
    return r, c


def snap_edge(net: Network, lat: float, lon: float) -> tuple[tuple[Node, Node], float]:
    """The edge a point lies on (nearest street) and its offset from the edge's lower node."""
    x, y = net.to_xy(lat, lon)
    r, c = y / SPACING_M, x / SPACING_M
    if abs(r - round(r)) <= abs(c - round(c)):  # on a row: an east-west street
        row, col = round(r), min(int(c), net.cols - 2)
        return ((row, col), (row, col + 1)), x - col * SPACING_M
    row, col = min(int(r), net.rows - 2), round(c)
    return ((row, col), (row + 1, col)), y - row * SPACING_M


# -- the model's index of the truth ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Poi:
    offset_m: float
    site: Site | None = None
    sign: tuple[int, int] | None = None  # (sign_type, limit_kmh)


@dataclass
class Index:
    on_edge: dict[tuple[Node, Node], list[Poi]] = field(default_factory=dict)
    at_node: dict[Node, Site] = field(default_factory=dict)
    worn: set[tuple[Node, Node]] = field(default_factory=set)
    tunnels: set[tuple[Node, Node]] = field(default_factory=set)


def _edges_between(net: Network, s: Stretch) -> set[tuple[Node, Node]]:
    a, b = snap_node(net, s.lat1, s.lon1), snap_node(net, s.lat2, s.lon2)
    path = net.route(a, b) if a[0] == b[0] or a[1] == b[1] else [a]
    return {(min(p, q), max(p, q)) for p, q in itertools.pairwise(path)}


def site_edges(truth: Truth, net: Network) -> Index:
    index = Index()
    for site in truth.sites:
        if site.kind == "intersection":
            index.at_node[snap_node(net, site.lat, site.lon)] = site
        else:
            edge, offset = snap_edge(net, site.lat, site.lon)
            index.on_edge.setdefault(edge, []).append(Poi(offset, site=site))
    for sign in truth.signs:
        edge, offset = snap_edge(net, sign.lat, sign.lon)
        index.on_edge.setdefault(edge, []).append(
            Poi(offset, sign=(sign.sign_type, sign.limit_kmh))
        )
    for s in truth.worn_lanes:
        index.worn |= _edges_between(net, s)
    for s in truth.tunnels:
        index.tunnels |= _edges_between(net, s)
    return index


# -- JSON --------------------------------------------------------------------------------


def _need(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in data:
        raise TruthError(f"{where}: key '{key}' is missing")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TruthError(f"{where}: key '{key}' has the wrong type ({type(value).__name__})")
    return value


def _items(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _need(data, key, list, "truth")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise TruthError(f"truth: key '{key}[{i}]' is not an object")
    return items


def from_json(data: object) -> Truth:
    if not isinstance(data, dict):
        raise TruthError("truth: not a JSON object")
    if data.get("schema") != SCHEMA:
        raise TruthError(f"truth: key 'schema' must be {SCHEMA}, not {data.get('schema')!r}")
    try:
        ext = _need(data, "extent", dict, "truth")
        rain = data.get("rain")
        outage = data.get("outage")
        return Truth(
            seed=int(_need(data, "seed", int, "truth")),
            start_ms=int(_need(data, "start_ms", int, "truth")),
            hours=float(_need(data, "hours", (int, float), "truth")),
            extent=Extent(**ext),
            hubs=tuple((float(a), float(b)) for a, b in _need(data, "hubs", list, "truth")),
            sites=tuple(
                Site(**{**s, "local_hours": tuple(s["local_hours"])}) for s in _items(data, "sites")
            ),
            worn_lanes=tuple(Stretch(**s) for s in _items(data, "worn_lanes")),
            rain=None if rain is None else Rain(**rain),
            signs=tuple(Sign(**s) for s in _items(data, "signs")),
            tunnels=tuple(Stretch(**s) for s in _items(data, "tunnels")),
            outage=None if outage is None else (int(outage[0]), int(outage[1])),
            utc_offset_h=int(data.get("utc_offset_h", UTC_OFFSET_H)),
            hazard_factor=float(data.get("hazard_factor", 0.0)),
        )
    except (TypeError, KeyError, ValueError) as exc:
        if isinstance(exc, TruthError):
            raise
        raise TruthError(
            f"truth: a site, stretch, sign or the rain has a bad field: {exc}"
        ) from None


def load(path: Path) -> Truth:
    try:
        text = path.read_text()
    except OSError as exc:
        raise TruthError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TruthError(f"{path}: not JSON: {exc}") from None
    return from_json(data)


def save(truth: Truth, path: Path) -> None:
    path.write_text(json.dumps(truth.to_json(), indent=1) + "\n")


# -- generation --------------------------------------------------------------------------


def _core_arterials(net: Network) -> list[Node]:
    cx, cy = net.extent.width_m / 2, net.extent.height_m / 2
    return [n for n in net.arterial_nodes() if distance_m(net.xy(n), (cx, cy)) < CORE_M]


def traffic(
    net: Network, hubs: tuple[Node, ...], seed: int, drivers: int, seconds: int
) -> tuple[Counter[Node], Counter[tuple[Node, Node]]]:
    """Node crossings and edge passes of a sample of taxis: where the traffic is."""
    from fleet_sim.model import Driver

    nodes: Counter[Node] = Counter()
    edges: Counter[tuple[Node, Node]] = Counter()
    for i in range(drivers):
        d = Driver(net, random.Random(f"{seed}/{i}"), hubs)
        for t in range(seconds):
            driven = d.step(float(t))
            for edge, _, _ in driven:
                edges[(min(edge), max(edge))] += 1
            if len(driven) > 1:
                nodes[driven[0][0][1]] += 1
    return nodes, edges


def _spread(candidates: list[Node], net: Network, n: int, taken: list[Node]) -> list[Node]:
    chosen: list[Node] = []
    for node in candidates:
        if all(distance_m(net.xy(node), net.xy(o)) >= SITE_SPACING_M for o in chosen + taken):
            chosen.append(node)
        if len(chosen) == n:
            break
    return chosen


@dataclass(frozen=True)
class Plan:
    seed: int
    taxis: int
    hours: float
    start_ms: int
    hazard_factor: float = 10.0
    extent: Extent = field(default_factory=lambda: Network.grid().extent)


def generate(plan: Plan) -> Truth:  # long: one pass over each kind of planted thing, in order
    rng = random.Random(f"truth/{plan.seed}")
    net = Network.grid(plan.extent)
    hubs = tuple(rng.sample(_core_arterials(net), HUBS))
    seconds = int(min(plan.hours, 2.0) * 3600)
    nodes, edges = traffic(net, hubs, plan.seed, min(plan.taxis, 20), seconds)
    taxi_hours = plan.taxis * plan.hours
    n_sites = max(2, min(30, round(taxi_hours / 10)))
    busy_nodes = [n for n, _ in nodes.most_common() if net.is_signal(n)]
    busy_arterial_edges = [
        e
        for e, _ in edges.most_common()
        if (e[0][0] == e[1][0] and e[0][0] % ARTERIAL_EVERY == 0)
        or (e[0][1] == e[1][1] and e[0][1] % ARTERIAL_EVERY == 0)
    ]
    pool = _spread(busy_nodes, net, 3 * n_sites, [])
    site_nodes = rng.sample(pool, min(n_sites, len(pool)))
    start_local = (plan.start_ms // HOUR_MS + UTC_OFFSET_H) % 24
    sites = []
    for i, node in enumerate(site_nodes):
        if plan.hours < 24:
            hours = (start_local, min(24, start_local + 3)) if i % 2 else (0, 24)
        else:
            hours = rng.choice(((7, 10), (17, 20))) if i % 2 else (0, 24)
        kind = "segment" if i % 3 == 2 else "intersection"
        lat, lon = net.to_latlon(*net.xy(node))
        if kind == "segment":
            edge = next((e for e in busy_arterial_edges if node in e), None)
            if edge is None:
                kind = "intersection"
            else:
                (ax, ay), (bx, by) = net.xy(edge[0]), net.xy(edge[1])
                lat, lon = net.to_latlon((ax + bx) / 2, (ay + by) / 2)
        rate = min(0.9, plan.hazard_factor * BACKGROUND_PER_PASS)
        sites.append(
            Site(f"site{i + 1}", SITE_TYPES[i % len(SITE_TYPES)], round(lat, 7), round(lon, 7),
                 kind, round(rate, 4), hours)
        )  # fmt: skip
    site_points = [snap_node(net, s.lat, s.lon) for s in sites]
    worn = []
    free_edges = [e for e in busy_arterial_edges if not set(e) & set(site_points)]
    for i, (a, b) in enumerate(free_edges[: max(2, n_sites // 2) * 3 : 3]):
        (lat1, lon1), (lat2, lon2) = net.to_latlon(*net.xy(a)), net.to_latlon(*net.xy(b))
        worn.append(
            Stretch(f"worn{i + 1}", round(lat1, 7), round(lon1, 7), round(lat2, 7), round(lon2, 7))
        )
    used = {e for s in worn for e in _edges_between(net, s)}
    sign_edges = [e for e in free_edges if e not in used][
        1 : max(5, min(60, round(taxi_hours / 4))) * 2 : 2
    ]
    signs = []
    for i, (a, b) in enumerate(sign_edges):
        (ax, ay), (bx, by) = net.xy(a), net.xy(b)
        f = rng.uniform(0.2, 0.8)
        lat, lon = net.to_latlon(ax + (bx - ax) * f, ay + (by - ay) * f)
        limit = rng.choice(SPEED_SIGN_LIMITS)
        signs.append(Sign(f"sign{i + 1}", round(lat, 7), round(lon, 7), limit, limit // 10 - 1))
    rain = _rain(rng, net, plan)
    quiet = [e for e in busy_arterial_edges[len(busy_arterial_edges) // 2 :] if e not in used]
    tunnels = []
    for i, (a, b) in enumerate(rng.sample(quiet, min(2, len(quiet)))):
        (lat1, lon1), (lat2, lon2) = net.to_latlon(*net.xy(a)), net.to_latlon(*net.xy(b))
        tunnels.append(Stretch(f"tunnel{i + 1}", lat1, lon1, lat2, lon2))
    total_s = int(plan.hours * 3600)
    outage = (int(total_s * 0.4), int(total_s * 0.4) + max(1, min(600, total_s // 10)))
    hub_points = tuple(net.to_latlon(*net.xy(h)) for h in hubs)
    return Truth(plan.seed, plan.start_ms, plan.hours, plan.extent, hub_points, tuple(sites),
                 tuple(worn), rain, tuple(signs), tuple(tunnels), outage,
                 hazard_factor=plan.hazard_factor)  # fmt: skip


def _rain(rng: random.Random, net: Network, plan: Plan) -> Rain:
    cx, cy = net.extent.width_m / 2, net.extent.height_m / 2
    angle = rng.uniform(0, 2 * math.pi)
    x, y = cx + 1500 * math.cos(angle), cy + 1500 * math.sin(angle)
    lat, lon = net.to_latlon(x, y)
    whole_hours = max(1, int(plan.hours))
    first = plan.start_ms - plan.start_ms % HOUR_MS
    if whole_hours <= 2:
        start, length = first, whole_hours
    else:
        length = rng.randint(2, min(4, whole_hours))
        start = first + rng.randrange(0, whole_hours - length + 1) * HOUR_MS
    return Rain(round(lat, 7), round(lon, 7), 2_500.0, start, start + length * HOUR_MS)
