"""Pure aggregation logic of the road-condition store: no I/O, no clock.

Decisions (both backends run exactly this code, so their aggregates are identical):

* **Cells.** Events and fixes are indexed at H3 resolution 12 (``h3_12``, ~9 m edge) and
  aggregated at resolution 10 (~66 m edge, a road segment or a junction), the res-10 parent
  of the res-12 cell. Cells are stored as integers (``h3.str_to_int``).
* **Hours.** A cell-hour is keyed by the hour-start time in ms (UTC). An event belongs to
  the cell of its fix and the hour of its own time; an event without a fix is stored but
  not aggregated.
* **Passes (exposure).** A vehicle makes a pass of a cell when one of its GNSS fixes (mode
  >= 2) lies in that cell and its previous fix did not: another cell, another hour, or more
  than ``PASS_GAP_MS`` ago (a parked taxi that drives off again makes a new visit). So a
  contiguous visit counts once, and a visit spanning an hour boundary counts once per hour
  it touches. This needs only a tiny per-vehicle state (current cell, hour, last fix time),
  kept in the ``vehicle_state`` table, so it is maintained incrementally per batch.
* **Shares.** The per-vehicle state also holds the wipers, camera-failsafe and lane-quality
  state from thinned signals (wiper switches ``CGW1.CF_Gway_Wiper{Int,Low,High}Sw`` != 0,
  ``ME_Display_Warnings.failsafe`` != 0, ``ME_LKA_{Left,Right}_Lane_A.quality`` >= 2 on at
  least one side). A pass is "with wipers" (failsafe, good lanes) if the condition held at
  any moment of the pass: at entry or whenever it becomes true during the pass; a
  ``wipers_on`` / ``camera_failsafe`` event during a pass marks it too. Each pass is counted
  at most once per condition (per-pass flags in the state).
* **Events and situations** (``docs/events.md``). Every located event counts under its type
  in the cell-hour's ``counts``. The hotspot rate counts *situations*: a located event of a
  traffic-situation type that does not continue an earlier event's situation (no
  ``joins`` attribute: an FCW after a headway warning, a PCW after a pedestrian in the
  zone, is the same encounter). Events that describe the road or the device rather than
  an encounter (``NOT_SITUATIONS``: signs, wipers, camera failsafe, tamper and
  maintenance, eviction notices) are counted by type only; their conditions have their
  own shares and sign clusters.
* **Mean speed.** Sum and count of the fix speeds (km/h) per cell-hour.
* **Order.** Records of one batch are applied in time order (state changes before fixes
  at equal times). Batches are applied in arrival order; a late bulk batch can therefore
  add an extra pass, a bounded error that keeps the aggregates incremental.
* **Signs.** A ``tsr_sign`` event with a fix joins the nearest cluster of the same sign type
  whose centroid is within ``SIGN_RADIUS_M`` (haversine), else starts a new cluster. The
  centroid is the running mean of the observations. Clusters are never merged afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

import h3

from protocol.batch import Batch
from protocol.contracts import (
    CAMERA_FAILSAFE,
    CAMERA_FAILSAFE_FLAG,
    CAMERA_MAINTENANCE,
    CAMERA_TAMPER,
    LANE_SIGNALS,
    OUTBOX_EVICTED,
    SITUATION_JOINS,
    TSR_SIGN,
    WIPER_SIGNALS,
    WIPERS_ON,
)
from protocol.records import Event, GnssFix

EVENT_RES: Final = 12
AGG_RES: Final = 10
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
PASS_GAP_MS: Final = 5 * 60_000
SIGN_RADIUS_M: Final = 15.0
EARTH_RADIUS_M: Final = 6_371_008.8
M_PER_DEG_LAT: Final = 111_320.0
MIN_FIX_MODE: Final = 2  # gpsd 2D or 3D
HIGH_LANE_QUALITY: Final = 2

FAILSAFE_SIGNAL: Final = CAMERA_FAILSAFE_FLAG
SIGN_EVENT: Final = TSR_SIGN.name
WIPERS_EVENT: Final = WIPERS_ON.name
FAILSAFE_EVENT: Final = CAMERA_FAILSAFE.name

# Counted under their type but never as a traffic situation (docs/events.md). A type not
# named here counts as one, so a new event type is in the hotspot rate unless listed.
NOT_SITUATIONS: Final = frozenset(
    e.name for e in (TSR_SIGN, WIPERS_ON, CAMERA_FAILSAFE, CAMERA_TAMPER, CAMERA_MAINTENANCE,
                     OUTBOX_EVICTED)
)  # fmt: skip

# Bits of the per-pass and per-vehicle condition flags.
WIPERS: Final = 1
FAILSAFE: Final = 2
LANES: Final = 4


def cell_at(lat: float, lon: float, res: int = EVENT_RES) -> int:
    return int(h3.str_to_int(h3.latlng_to_cell(lat, lon, res)))


def parent(cell: int, res: int = AGG_RES) -> int:
    return int(h3.str_to_int(h3.cell_to_parent(h3.int_to_str(cell), res)))


def parent_bits(res: int) -> tuple[int, int]:
    """``(keep, fill)``: the res-``res`` H3 parent of a finer index ``c`` is
    ``(c & keep) | fill`` (the resolution field set, the finer digits set to 7), the same
    bit arithmetic in Python and in SQL, so both give the same parent."""
    if not 0 <= res <= 15:
        raise ValueError(f"H3 resolution must be within [0, 15], not {res}")
    low = (1 << (3 * (15 - res))) - 1
    return ((1 << 63) - 1) & ~(0xF << 52) & ~low, (res << 52) | low


def covering(bbox: tuple[float, float, float, float], res: int, max_cells: int) -> list[int] | None:
    """The res-``res`` cells whose res-12 children may lie in ``bbox`` (min_lon, min_lat,
    max_lon, max_lat): the cells whose centre lies in ``bbox`` grown by two edge lengths
    (a cell's children reach past its hexagon by less than one), ascending; None when
    that is more than ``max_cells`` (estimated from the area before any is listed)."""
    edge_km = float(h3.average_hexagon_edge_length(res, unit="km"))
    mid = math.cos(math.radians((bbox[1] + bbox[3]) / 2))
    dlat = 2 * edge_km / (M_PER_DEG_LAT / 1000)
    dlon = min(dlat / max(mid, 0.01), 360.0)
    south, north = max(bbox[1] - dlat, -90.0), min(bbox[3] + dlat, 90.0)
    west, east = max(bbox[0] - dlon, -180.0), min(bbox[2] + dlon, 180.0)
    km2 = (north - south) * (east - west) * mid * (M_PER_DEG_LAT / 1000) ** 2
    if km2 > max_cells * float(h3.average_hexagon_area(res, unit="km^2")):
        return None
    poly = h3.LatLngPoly([(south, west), (south, east), (north, east), (north, west)])
    found = h3.h3shape_to_cells(poly, res)
    if len(found) > max_cells:
        return None
    return sorted(int(h3.str_to_int(c)) for c in found)


def centre(cell: int) -> tuple[float, float]:
    lat, lon = h3.cell_to_latlng(h3.int_to_str(cell))
    return float(lat), float(lon)


def hour_of(time_ms: int) -> int:
    return time_ms - time_ms % HOUR_MS


def day_of(time_ms: int) -> int:
    """The start of the UTC day of ``time_ms`` (floored, before 1970 too)."""
    return time_ms - time_ms % DAY_MS


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, a)))


def degree_box(lat: float, lon: float, radius_m: float) -> tuple[float, float, float, float]:
    """A (min_lon, min_lat, max_lon, max_lat) box that contains the circle: the index
    lookup for candidates; the exact test is haversine."""
    dlat = radius_m / M_PER_DEG_LAT * 1.01
    dlon = dlat / max(math.cos(math.radians(lat)), 1e-6)
    return lon - dlon, lat - dlat, lon + dlon, lat + dlat


# -- acknowledgements ------------------------------------------------------------------


def advance_contiguous(
    acked: int, receipts: Iterable[tuple[int, int]], now_ms: int, grace_ms: int | None
) -> int:
    """The highest seq to acknowledge, starting from ``acked`` (already acknowledged).

    ``receipts`` are ``(seq, received_ms)`` of stored batches with seq > acked, ascending.
    The next seq extends the run when it is present. A gap holds the ack back, so that an
    early ack never lets the taxi delete a batch still in flight. With ``grace_ms`` None
    (the default) it holds until the missing seq arrives: agents send an eviction notice
    under the seq of every batch they evict. With a number, a run of missing seqs
    (including 1 .. lowest-1 at the start of an epoch) is skipped once the batch right
    after it was received at least ``grace_ms`` before ``now_ms``, for agents that leave
    evicted seqs missing.
    """
    current = acked
    for seq, received_ms in receipts:
        if seq <= current:
            continue
        if seq != current + 1 and (grace_ms is None or now_ms - received_ms < grace_ms):
            break
        current = seq
    return current


# -- per-vehicle state and cell-hour deltas --------------------------------------------


@dataclass(frozen=True, slots=True)
class VehicleState:
    """What pass detection remembers about a vehicle between batches."""

    cell: int | None = None  # res-10 cell of the current pass
    hour_ms: int | None = None
    last_fix_ms: int | None = None
    wiper_bits: int = 0  # one bit per wiper switch that is on
    failsafe: bool = False
    lane_left: int | None = None
    lane_right: int | None = None
    pass_flags: int = 0  # conditions already counted for the current pass

    @property
    def conditions(self) -> int:
        flags = WIPERS if self.wiper_bits else 0
        if self.failsafe:
            flags |= FAILSAFE
        qualities = [q for q in (self.lane_left, self.lane_right) if q is not None]
        if any(q >= HIGH_LANE_QUALITY for q in qualities):
            flags |= LANES
        return flags


@dataclass(slots=True)
class CellDelta:
    passes: int = 0
    wipers: int = 0
    failsafe: int = 0
    lanes: int = 0
    speed_sum: float = 0.0
    speed_n: int = 0

    def add_flags(self, flags: int) -> None:
        self.wipers += bool(flags & WIPERS)
        self.failsafe += bool(flags & FAILSAFE)
        self.lanes += bool(flags & LANES)


@dataclass(slots=True)
class Deltas:
    """Increments to the road aggregates from one batch, keyed by (cell, hour_ms)."""

    cells: dict[tuple[int, int], CellDelta] = field(default_factory=dict)
    events: dict[tuple[int, int, str], int] = field(default_factory=dict)
    # Situations per (cell, hour_ms): the hotspot rate's numerator.
    situations: dict[tuple[int, int], int] = field(default_factory=dict)

    def cell(self, cell: int, hour_ms: int) -> CellDelta:
        return self.cells.setdefault((cell, hour_ms), CellDelta())

    def counts(self) -> dict[tuple[int, int], dict[str, int]]:
        """The event counts per type of each (cell, hour_ms) that has events."""
        per_cell: dict[tuple[int, int], dict[str, int]] = {}
        for (cell, hour, kind), n in self.events.items():
            per_cell.setdefault((cell, hour), {})[kind] = n
        return per_cell


@dataclass(frozen=True, slots=True)
class _Change:
    time_ms: int
    name: str
    value: float | int | None


def _apply_signal(state: VehicleState, name: str, value: float | int | None) -> VehicleState:
    if name in WIPER_SIGNALS:
        bit = 1 << WIPER_SIGNALS.index(name)
        bits = state.wiper_bits | bit if value else state.wiper_bits & ~bit
        return replace(state, wiper_bits=bits)
    if name == FAILSAFE_SIGNAL:
        return replace(state, failsafe=bool(value))
    if name == LANE_SIGNALS[0]:
        return replace(state, lane_left=None if value is None else int(value))
    if name == LANE_SIGNALS[1]:
        return replace(state, lane_right=None if value is None else int(value))
    return state


def _in_pass(state: VehicleState, time_ms: int) -> bool:
    return (
        state.cell is not None
        and state.last_fix_ms is not None
        and time_ms - state.last_fix_ms <= PASS_GAP_MS
    )


def _mark(state: VehicleState, flags: int, time_ms: int, deltas: Deltas) -> VehicleState:
    """Count conditions ``flags`` for the current pass, once each."""
    new = flags & ~state.pass_flags
    if not new or not _in_pass(state, time_ms):
        return state
    assert state.cell is not None
    assert state.hour_ms is not None
    deltas.cell(state.cell, state.hour_ms).add_flags(new)
    return replace(state, pass_flags=state.pass_flags | new)


def _apply_fix(state: VehicleState, fix: GnssFix, deltas: Deltas) -> VehicleState:
    if fix.mode < MIN_FIX_MODE:
        return state
    cell = cell_at(fix.lat, fix.lon, AGG_RES)
    hour = hour_of(fix.time_ms)
    entered = (
        cell != state.cell
        or hour != state.hour_ms
        or state.last_fix_ms is None
        or abs(fix.time_ms - state.last_fix_ms) > PASS_GAP_MS
    )
    delta = deltas.cell(cell, hour)
    if entered:
        delta.passes += 1
        state = replace(state, cell=cell, hour_ms=hour, pass_flags=0)
    if fix.speed_mps is not None:
        delta.speed_sum += fix.speed_mps * 3.6
        delta.speed_n += 1
    state = replace(state, last_fix_ms=fix.time_ms)
    return _mark(state, state.conditions, fix.time_ms, deltas)


def _event_flags(event: Event) -> int:
    if event.type == WIPERS_EVENT:
        return WIPERS
    if event.type == FAILSAFE_EVENT:
        return FAILSAFE
    return 0


def is_situation(event: Event) -> bool:
    """Whether the event opens a traffic situation of its own (the module docstring)."""
    return event.type not in NOT_SITUATIONS and event.attrs.get(SITUATION_JOINS) is None


TRACKED_SIGNALS: Final = frozenset((*WIPER_SIGNALS, FAILSAFE_SIGNAL, *LANE_SIGNALS))


def apply_batch(state: VehicleState, batch: Batch) -> tuple[VehicleState, Deltas]:
    """Advance a vehicle's state over one batch; return the new state and the increments."""
    deltas = Deltas()
    for time_ms, _, _, item in _timeline(batch, deltas):
        if isinstance(item, _Change):
            state = _apply_signal(state, item.name, item.value)
            state = _mark(state, state.conditions, time_ms, deltas)
        elif isinstance(item, Event):
            state = _mark(state, _event_flags(item), time_ms, deltas)
        else:
            state = _apply_fix(state, item, deltas)
    return state, deltas


_Item = tuple[int, int, int, _Change | Event | GnssFix]


def _timeline(batch: Batch, deltas: Deltas) -> list[_Item]:
    """The batch's tracked signal changes, flagged events and fixes in time order; counts
    each located event into ``deltas`` on the way.

    (time, order, item): at equal times state changes (0) come before events (1) and fixes
    (2), so a condition that starts with a fix counts for that fix's pass.
    """
    timeline: list[_Item] = []
    for series in batch.signals:
        if series.name in TRACKED_SIGNALS:
            for t, v in zip(series.times_ms, series.values, strict=True):
                timeline.append((t, 0, len(timeline), _Change(t, series.name, v)))
    for event in batch.events:
        if _event_flags(event):
            timeline.append((event.time_ms, 1, len(timeline), event))
        if event.fix is not None:
            cell = parent(cell_at(event.fix.lat, event.fix.lon))
            key = (cell, hour_of(event.time_ms), event.type)
            deltas.events[key] = deltas.events.get(key, 0) + 1
            deltas.cell(cell, key[1])  # the cell-hour row exists even without a pass
            if is_situation(event):
                deltas.situations[key[:2]] = deltas.situations.get(key[:2], 0) + 1
    for fix in batch.gnss:
        timeline.append((fix.time_ms, 2, len(timeline), fix))
    timeline.sort(key=lambda item: item[:3])
    return timeline


# -- signs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignObservation:
    sign_type: int
    lat: float
    lon: float
    limit_kmh: int | None
    time_ms: int


def sign_observations(events: Iterable[Event]) -> list[SignObservation]:
    """The ``tsr_sign`` events that can be placed: with a fix and an integer sign type."""
    found = []
    for event in events:
        sign = event.attrs.get("sign_type")
        if event.type != SIGN_EVENT or event.fix is None or isinstance(sign, bool):
            continue
        if not isinstance(sign, int):
            continue
        limit = event.attrs.get("limit_kmh")
        limit_kmh = limit if isinstance(limit, int) and not isinstance(limit, bool) else None
        found.append(SignObservation(sign, event.fix.lat, event.fix.lon, limit_kmh, event.time_ms))
    return found


def nearest_cluster(
    candidates: Sequence[tuple[int, float, float]],
    lat: float,
    lon: float,
    radius_m: float = SIGN_RADIUS_M,
) -> int | None:
    """The id of the nearest ``(id, lat, lon)`` within ``radius_m``, or None."""
    best: tuple[float, int] | None = None
    for cluster_id, c_lat, c_lon in candidates:
        d = haversine_m(lat, lon, c_lat, c_lon)
        if d <= radius_m and (best is None or (d, cluster_id) < best):
            best = (d, cluster_id)
    return None if best is None else best[1]


def running_mean(mean: float, n: int, value: float) -> float:
    """The mean of n values ``mean`` plus one more value."""
    return mean + (value - mean) / (n + 1)
