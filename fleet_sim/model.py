"""The behaviour model: what one taxi does, second by simulated second, as records.

Pure and deterministic: a taxi's records are a function of the seed, its index and the
truth alone. They are generated one simulated second at a time from one random stream,
so how the seconds are grouped into flushes (which depends on ``--speed``) changes nothing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from fleet_sim.network import SPACING_M, Network, Node
from fleet_sim.truth import Truth, site_edges
from protocol.contracts import (
    FCW,
    HARSH_BRAKING,
    HEADWAY_WARNING,
    LANE_QUALITY_LEFT,
    LANE_QUALITY_RIGHT,
    LDW_LEFT,
    LDW_RIGHT,
    PCW,
    TSR_SIGN,
    WIPER_INT_SW,
    WIPERS_ON,
)
from protocol.records import Event, GnssFix, SignalSeries

ACCEL_MPS2: Final = 1.5
BRAKE_MPS2: Final = 2.5
DWELL_S: Final = (20, 90)  # a fare's pick-up or drop-off
GNSS_SIGMA_M: Final = 3.0  # per axis: 3.8 m mean radial error
CANYON_OUTLIER_P: Final = 0.01  # per fix in the core: a 20 m urban-canyon reflection
CANYON_OUTLIER_M: Final = 20.0
CORE_RADIUS_M: Final = 3_000.0
SIGN_SEEN_P: Final = 0.9
ON_DUTY_S: Final = 11 * 3600  # then an hour with the ignition off (shift change)
SHIFT_S: Final = 12 * 3600
POWER_CUTS_PER_DAY: Final = 1.0
LANE_KEEPALIVE_S: Final = 30

# Background rates per 1,000 km, of the order public fleet reports give.
BACKGROUND_PER_1000_KM: Final = {
    FCW.name: 2.0,
    HEADWAY_WARNING.name: 20.0,
    PCW.name: 0.5,
    LDW_LEFT.name: 4.0,
    LDW_RIGHT.name: 4.0,
    HARSH_BRAKING.name: 3.0,
}


@dataclass
class Driver:
    """Where a taxi is: its route, the edge it is on and its speed."""

    net: Network
    rng: random.Random
    hubs: tuple[Node, ...]
    path: list[Node] = field(default_factory=list)
    idx: int = 0
    pos_m: float = 0.0
    v_mps: float = 0.0
    dwell_s: int = 0
    factor: float = 1.0

    def __post_init__(self) -> None:
        self.path = [self.net.random_node(self.rng)]

    @property
    def edge(self) -> tuple[Node, Node] | None:
        return (
            None
            if self.idx + 1 >= len(self.path)
            else (self.path[self.idx], self.path[self.idx + 1])
        )

    def xy(self) -> tuple[float, float]:
        edge = self.edge
        if edge is None:
            return self.net.xy(self.path[-1])
        (ax, ay), (bx, by) = self.net.xy(edge[0]), self.net.xy(edge[1])
        f = self.pos_m / SPACING_M
        return ax + (bx - ax) * f, ay + (by - ay) * f

    def _new_fare(self) -> None:
        here = self.path[-1]
        dest = (
            self.rng.choice(self.hubs)
            if self.rng.random() < 0.5
            else self.net.random_node(self.rng)
        )
        self.path = self.net.route(here, dest)
        self.idx, self.pos_m = 0, 0.0
        self.factor = self.rng.uniform(0.8, 1.05)

    def step(self, t_s: float) -> list[tuple[tuple[Node, Node], float, float]]:
        """One second; the stretches driven, as (edge, from_m, to_m) along the edge."""
        edge = self.edge
        if edge is None:
            self.v_mps = 0.0
            if self.dwell_s <= 0:
                self.dwell_s = self.rng.randint(*DWELL_S)
            self.dwell_s -= 1
            if self.dwell_s <= 0:
                self._new_fare()
            return []
        a, b = edge
        target = self.net.limit_kmh(a, b) / 3.6 * self.factor
        to_node = SPACING_M - self.pos_m
        red = self.net.is_signal(b) and not self.net.green(b, a[1] == b[1], t_s)
        v = min(self.v_mps + ACCEL_MPS2, target)
        if red:
            v = min(v, math.sqrt(2 * BRAKE_MPS2 * max(0.0, to_node - 2.0)))
        last = self.idx + 2 >= len(self.path)
        if last:  # slow down to stop at the destination
            v = min(v, math.sqrt(2 * BRAKE_MPS2 * max(0.0, to_node)) + 0.5)
        self.v_mps = v
        start = self.pos_m
        if start + v < SPACING_M:
            self.pos_m = start + v
            return [(edge, start, self.pos_m)]
        driven = [(edge, start, SPACING_M)]
        self.idx += 1
        self.pos_m = 0.0 if self.edge is None else min(start + v - SPACING_M, SPACING_M - 1)
        if self.edge is not None:
            driven.append((self.edge, 0.0, self.pos_m))
        return driven


@dataclass
class Chunk:
    """Records of some simulated seconds, as the pipeline would hand them to the outbox."""

    fixes: list[GnssFix] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    signals: dict[str, list[tuple[int, float | int | None]]] = field(default_factory=dict)

    def sample(self, name: str, time_ms: int, value: float | int | None) -> None:
        self.signals.setdefault(name, []).append((time_ms, value))

    def series(self) -> tuple[SignalSeries, ...]:
        return tuple(
            SignalSeries(name, tuple(t for t, _ in s), tuple(v for _, v in s))
            for name, s in sorted(self.signals.items())
        )

    def __len__(self) -> int:
        return len(self.fixes) + len(self.events) + sum(len(s) for s in self.signals.values())


def _key(edge: tuple[Node, Node]) -> tuple[Node, Node]:
    return (edge[0], edge[1]) if edge[0] <= edge[1] else (edge[1], edge[0])


def _along(edge: tuple[Node, Node], from_m: float, to_m: float) -> tuple[float, float]:
    """The driven stretch in the edge's own coordinate (metres from its lower node)."""
    if edge[0] <= edge[1]:
        return from_m, to_m
    return SPACING_M - to_m, SPACING_M - from_m


@dataclass
class TaxiModel:
    """One taxi's behaviour: ``advance(until_s)`` returns the records up to that second."""

    truth: Truth
    index: int
    net: Network = field(init=False)
    t_s: int = 0
    rng: random.Random = field(init=False)
    driver: Driver = field(init=False)
    _chunk: Chunk = field(default_factory=Chunk)
    _wipers: int = 0
    _lanes: int | None = None
    _lanes_at: int = -LANE_KEEPALIVE_S
    _edge: tuple[Node, Node] | None = None
    km: float = 0.0

    def __post_init__(self) -> None:
        self.net = self.truth.network()
        self.rng = random.Random(f"{self.truth.seed}/{self.index}")
        self.driver = Driver(self.net, self.rng, self.truth.hub_nodes())
        self.phase_s = self.rng.randrange(SHIFT_S)
        self._pois = site_edges(self.truth, self.net)

    def power_cuts(self, until_s: int) -> list[int]:
        """Simulated seconds at which this taxi's gateway loses power (its own stream)."""
        rng = random.Random(f"{self.truth.seed}/{self.index}/power")
        cuts: list[int] = []
        t = 0.0
        while True:
            t += rng.expovariate(POWER_CUTS_PER_DAY / 86_400)
            if t >= until_s:
                return cuts
            cuts.append(int(t))

    def on_duty(self, t_s: int) -> bool:
        return (t_s + self.phase_s) % SHIFT_S < ON_DUTY_S

    def advance(self, until_s: int) -> Chunk:
        while self.t_s < until_s:
            if self.on_duty(self.t_s):
                self._second(self.t_s)
            self.t_s += 1
        chunk, self._chunk = self._chunk, Chunk()
        return chunk

    # -- one second ----------------------------------------------------------------------

    def _second(self, t: int) -> None:
        d = self.driver
        driven = d.step(float(t))
        t_ms = self.truth.start_ms + t * 1000
        x, y = d.xy()
        metres = sum(b - a for _, a, b in driven)
        self.km += metres / 1000
        tunnel = d.edge is not None and _key(d.edge) in self._pois.tunnels
        fix = None if tunnel else self.fix_at(t_ms, x, y, d.v_mps)
        if fix is not None:
            self._chunk.fixes.append(fix)
        self._conditions(t, t_ms, x, y, d.edge)
        for name, per_1000_km in BACKGROUND_PER_1000_KM.items():
            if self.rng.random() < per_1000_km * metres / 1e6:
                self._event(name, t_ms + self.rng.randrange(1000), fix, d.v_mps, {})
        for edge, a, b in driven:
            self._pois_on(edge, a, b, t_ms, d.v_mps, tunnel)
        if len(driven) > 1:
            self._crossed(driven[0][0][1], t_ms, d.v_mps)

    def _crossed(self, node: Node, t_ms: int, v: float) -> None:
        site = self._pois.at_node.get(node)
        if site is None:
            return
        at_ms = t_ms + self.rng.randrange(1000)
        if self.rng.random() < site.rate_at(at_ms, self.truth.utc_offset_h):
            x, y = self.net.xy(node)
            self._event(site.event_type, at_ms, self.fix_at(at_ms, x, y, v), v, {})

    def fix_at(self, t_ms: int, x: float, y: float, v: float) -> GnssFix:
        ex, ey = self.rng.gauss(0, GNSS_SIGMA_M), self.rng.gauss(0, GNSS_SIGMA_M)
        cx, cy = self.net.extent.width_m / 2, self.net.extent.height_m / 2
        if math.hypot(x - cx, y - cy) < CORE_RADIUS_M and self.rng.random() < CANYON_OUTLIER_P:
            angle = self.rng.uniform(0, 2 * math.pi)
            ex, ey = CANYON_OUTLIER_M * math.cos(angle), CANYON_OUTLIER_M * math.sin(angle)
        lat, lon = self.net.to_latlon(x + ex, y + ey)
        return GnssFix(t_ms, round(lat, 7), round(lon, 7), 3, 40.0, round(v, 2), None, 0)

    def _event(
        self,
        name: str,
        t_ms: int,
        fix: GnssFix | None,
        v: float,
        attrs: dict[str, int | float | str | bool | None],
    ) -> None:
        self._chunk.events.append(Event(name, t_ms, round(v * 3.6, 1), fix, None, attrs))

    def _conditions(
        self, t: int, t_ms: int, x: float, y: float, edge: tuple[Node, Node] | None
    ) -> None:
        rain = self.truth.rain
        wet = rain is not None and rain.covers(self.net, x, y, t_ms)
        if int(wet) != self._wipers:
            self._wipers = int(wet)
            self._chunk.sample(WIPER_INT_SW, t_ms, self._wipers)
            if wet:
                self._event(WIPERS_ON.name, t_ms, None, self.driver.v_mps, {})
        if edge is not None and edge != self._edge:
            self._edge = edge
            worn = _key(edge) in self._pois.worn
            q = (
                (1 if self.rng.random() < 0.9 else 2)
                if worn
                else (3 if self.rng.random() < 0.97 else 1)
            )
            if q != self._lanes:
                self._lanes = q
                self._lanes_at = -LANE_KEEPALIVE_S
        if self._lanes is not None and t - self._lanes_at >= LANE_KEEPALIVE_S:
            self._lanes_at = t
            self._chunk.sample(LANE_QUALITY_LEFT, t_ms, self._lanes)
            self._chunk.sample(LANE_QUALITY_RIGHT, t_ms, self._lanes)

    def _pois_on(
        self, edge: tuple[Node, Node], from_m: float, to_m: float, t_ms: int, v: float, tunnel: bool
    ) -> None:
        lo, hi = _along(edge, from_m, to_m)
        key = _key(edge)
        (ax, ay), (bx, by) = self.net.xy(key[0]), self.net.xy(key[1])
        for poi in self._pois.on_edge.get(key, ()):
            if not lo <= poi.offset_m < hi:
                continue
            f = poi.offset_m / SPACING_M
            x, y = ax + (bx - ax) * f, ay + (by - ay) * f
            at_ms = t_ms + self.rng.randrange(1000)
            fix = None if tunnel else self.fix_at(at_ms, x, y, v)
            if poi.sign is not None:
                if self.rng.random() < SIGN_SEEN_P:
                    sign_type, limit = poi.sign
                    self._event(
                        TSR_SIGN.name,
                        at_ms,
                        fix,
                        v,
                        {"sign_type": sign_type, "limit_kmh": limit, "kind": "speed_limit"},
                    )
            elif poi.site is not None and self.rng.random() < poi.site.rate_at(
                at_ms, self.truth.utc_offset_h
            ):
                self._event(poi.site.event_type, at_ms, fix, v, {})


def seconds(hours: float) -> int:
    return round(hours * 3600)


def chunks(model: TaxiModel, until_s: int, step_s: int) -> Iterator[Chunk]:
    """The taxi's records in chunks of ``step_s`` simulated seconds (tests, truth)."""
    t = model.t_s
    while t < until_s:
        t = min(t + step_s, until_s)
        yield model.advance(t)
