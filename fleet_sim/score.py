"""``fleet-sim score``: ask the collector's public API what a city's backend would ask,
and compare the answers with the planted truth (docs/road-conditions.md, "Scoring").

Hotspots: each cell's situations are summed over the run per time-of-day band (all day,
and each site's own hours); a cell is flagged when its count is improbably high for its
exposure at the city's background rate (Poisson upper tail below ``ALPHA`` divided by the
number of cells tested, and at least ``MIN_SITUATIONS``), counting the cell together with
its neighbours: GNSS noise puts a junction's events into two or three cells when the
junction lies near a cell edge. Flagged cells next to each other form one hotspot.
Precision: hotspots within ``MATCH_M`` of a planted site; recall: sites with a flagged
cell within ``MATCH_M``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from fleet_sim.network import Network, distance_m, point_segment_m
from fleet_sim.truth import HOUR_MS, Truth
from protocol.contracts import EVENT_TYPES, SITUATION_JOINS  # noqa: F401 - names the rule

# Event types that describe the road or the device, not an encounter (docs/events.md).
NOT_SITUATIONS: Final = frozenset(
    {"tsr_sign", "wipers_on", "camera_failsafe", "camera_tamper", "camera_maintenance",
     "outbox_evicted"}
)  # fmt: skip
SITUATION_TYPES: Final = frozenset(e.name for e in EVENT_TYPES) - NOT_SITUATIONS
ALPHA: Final = 0.01
MIN_SITUATIONS: Final = 3
MATCH_M: Final = 150.0
# Centre to centre, resolution-10 neighbours are about 115 m apart.
NEIGHBOUR_M: Final = 130.0
WORN_NEAR_M: Final = 40.0
WORN_END_M: Final = 80.0
WORN_SHARE: Final = 0.5
RAIN_MARGIN_M: Final = 300.0
WET_SHARE: Final = 0.5
SIGN_NEAR_M: Final = 50.0
MIN_EXPOSURE: Final = 2
TARGET: Final = 0.9
SIGN_TARGET_M: Final = 10.0
MAX_PAGES: Final = 10_000


class Api:
    """Every request to the collector goes through here (the bearer token, paging)."""

    def __init__(self, base: str, token: str | None = None, timeout_s: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=base.rstrip("/"), headers=headers, timeout=timeout_s)

    def features(self, path: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Every feature of a collection, following ``next`` links and ``next_cursor``."""
        url: str | None = path
        query: dict[str, str] | None = params
        for _ in range(MAX_PAGES):
            if url is None:
                return
            r = self.client.get(url, params=query)
            r.raise_for_status()
            body = r.json()
            yield from body.get("features", [])
            url, query = _next(body, path, params)
        raise RuntimeError(f"{path}: more than {MAX_PAGES} pages")


def _next(
    body: dict[str, Any], path: str, params: dict[str, str]
) -> tuple[str | None, dict[str, str] | None]:
    link = body.get("next")
    if isinstance(link, str) and link:
        return link, None
    for link_obj in body.get("links", []) or []:
        if isinstance(link_obj, dict) and link_obj.get("rel") == "next":
            return str(link_obj["href"]), None
    cursor = body.get("next_cursor")
    if isinstance(cursor, str) and cursor:
        return path, {**params, "cursor": cursor}
    return None, None


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def bbox(truth: Truth) -> str:
    e = truth.extent
    return f"{e.west},{e.south},{e.east},{e.north}"


@dataclass
class Cell:
    lat: float
    lon: float
    hours: dict[int, dict[str, Any]] = field(default_factory=dict)  # hour_ms -> properties


def poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam)."""
    if k <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    term = math.exp(-lam)
    below = term
    for i in range(1, k):
        term *= lam / i
        below += term
    return max(0.0, 1.0 - below)


def _situations(props: dict[str, Any]) -> int:
    counts = props.get("counts") or {}
    return sum(int(n) for t, n in counts.items() if t in SITUATION_TYPES)


def _hours_in_band(truth: Truth, hour_ms: int, band: tuple[int, int]) -> bool:
    local = (hour_ms // HOUR_MS + truth.utc_offset_h) % 24
    return band[0] <= local < band[1]


def _band_sums(
    truth: Truth, cells: dict[str, Cell], band: tuple[int, int]
) -> dict[str, tuple[int, int]]:
    sums: dict[str, tuple[int, int]] = {}
    for key, cell in cells.items():
        k = n = 0
        for hour, props in cell.hours.items():
            if _hours_in_band(truth, hour, band):
                k += _situations(props)
                n += int(props.get("exposure") or 0)
        sums[key] = (k, n)
    return sums


def neighbours(net: Network, cells: dict[str, Cell]) -> dict[str, list[str]]:
    """Each cell and the cells whose centres lie within ``NEIGHBOUR_M`` of its centre."""
    xy = {key: net.to_xy(c.lat, c.lon) for key, c in cells.items()}
    buckets: dict[tuple[int, int], list[str]] = {}
    for key, (x, y) in xy.items():
        buckets.setdefault((int(x // NEIGHBOUR_M), int(y // NEIGHBOUR_M)), []).append(key)
    found: dict[str, list[str]] = {}
    for key, (x, y) in xy.items():
        bx, by = int(x // NEIGHBOUR_M), int(y // NEIGHBOUR_M)
        found[key] = [
            other
            for dx in (-1, 0, 1)
            for dy in (-1, 0, 1)
            for other in buckets.get((bx + dx, by + dy), ())
            if distance_m(xy[other], (x, y)) <= NEIGHBOUR_M
        ]
    return found


def flagged_cells(truth: Truth, cells: dict[str, Cell]) -> dict[str, tuple[int, int]]:
    """Cells whose neighbourhood's situations are improbably many for its exposure, in
    some time-of-day band: (situations, passes) of the neighbourhood by cell."""
    bands = {(0, 24), *(s.local_hours for s in truth.sites)}
    near = neighbours(truth.network(), cells)
    flagged: dict[str, tuple[int, int]] = {}
    for band in sorted(bands):
        sums = _band_sums(truth, cells, band)
        k_all = sum(k for k, _ in sums.values())
        n_all = sum(n for _, n in sums.values())
        if not n_all:
            continue
        rate = k_all / n_all
        tested = [key for key, (_, n) in sums.items() if n > 0] or [""]
        alpha = ALPHA / len(tested)
        for key in sums:
            k = sum(sums[o][0] for o in near[key])
            n = sum(sums[o][1] for o in near[key])
            if k >= MIN_SITUATIONS and poisson_sf(k, rate * max(n, 1)) < alpha:
                flagged[key] = (k, n)
    return flagged


def hotspot_groups(
    net: Network, cells: dict[str, Cell], flagged: dict[str, tuple[int, int]]
) -> list[list[str]]:
    """Flagged cells joined into hotspots: neighbours belong to the same one."""
    near = neighbours(net, {key: cells[key] for key in flagged})
    groups: list[list[str]] = []
    seen: set[str] = set()
    for start in flagged:
        if start in seen:
            continue
        group, todo = [], [start]
        seen.add(start)
        while todo:
            key = todo.pop()
            group.append(key)
            for other in near[key]:
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
        groups.append(group)
    return groups


def _site_distance(net: Network, truth_site: Any, lat: float, lon: float) -> float:
    return distance_m(net.to_xy(lat, lon), net.to_xy(truth_site.lat, truth_site.lon))


def hotspots(truth: Truth, cells: dict[str, Cell], out: list[str]) -> dict[str, float]:
    """Precision over hotspots (groups of flagged cells), recall over planted sites."""
    net = truth.network()
    flagged = flagged_cells(truth, cells)
    groups = hotspot_groups(net, cells, flagged)
    true_pos = 0
    for group in groups:
        near = [
            s for s in truth.sites for key in group
            if _site_distance(net, s, cells[key].lat, cells[key].lon) <= MATCH_M
        ]  # fmt: skip
        true_pos += bool(near)
        if not near:
            top = max(group, key=lambda key: flagged[key][0])
            cell, (k, n) = cells[top], flagged[top]
            out.append(
                f"  false hotspot: around cell {top} ({cell.lat:.5f},{cell.lon:.5f}):"
                f" {k} situations in {n} passes"
            )
    found = 0
    for s in truth.sites:
        close = [key for key, c in cells.items() if _site_distance(net, s, c.lat, c.lon) <= MATCH_M]
        hit = [key for key in close if key in flagged]
        found += bool(hit)
        if not hit:
            exposure = sum(
                int(p.get("exposure") or 0) for key in close for p in cells[key].hours.values()
            )
            out.append(
                f"  missed site {s.id} ({s.event_type}, {s.kind}):"
                f" {exposure} passes in the cells within {MATCH_M:g} m"
            )
    precision = true_pos / len(groups) if groups else (1.0 if not truth.sites else 0.0)
    recall = found / len(truth.sites) if truth.sites else 1.0
    return {"hotspot_precision": round(precision, 3), "hotspot_recall": round(recall, 3),
            "hotspots_flagged": len(groups), "sites_planted": len(truth.sites)}  # fmt: skip


def worn(truth: Truth, cells: dict[str, Cell], out: list[str]) -> dict[str, float]:
    net = truth.network()
    found = 0
    for s in truth.worn_lanes:
        a, b = net.to_xy(s.lat1, s.lon1), net.to_xy(s.lat2, s.lon2)
        shares = []
        for c in cells.values():
            p = net.to_xy(c.lat, c.lon)
            if (
                point_segment_m(p, a, b) > WORN_NEAR_M
                or min(distance_m(p, a), distance_m(p, b)) < WORN_END_M
            ):
                continue
            n = sum(int(h.get("exposure") or 0) for h in c.hours.values())
            good = sum(
                int(h.get("exposure") or 0) * float(h.get("lane_quality_share") or 0)
                for h in c.hours.values()
            )
            if n >= MIN_EXPOSURE:
                shares.append(good / n)
        hit = any(x <= WORN_SHARE for x in shares)
        found += hit
        if not hit:
            out.append(
                f"  worn stretch {s.id} not found"
                f" (lane-quality shares of its cells: {[round(x, 2) for x in shares]})"
            )
    n_worn = len(truth.worn_lanes)
    return {"worn_recall": round(found / n_worn, 3) if n_worn else 1.0, "worn_planted": n_worn}


def rain(truth: Truth, cells: dict[str, Cell], out: list[str]) -> dict[str, float]:
    r = truth.rain
    if r is None:
        return {"rain_recall": 1.0}
    net = truth.network()
    centre = net.to_xy(r.lat, r.lon)
    wet = dry = false_wet = 0
    for c in cells.values():
        d = distance_m(net.to_xy(c.lat, c.lon), centre)
        for hour, props in c.hours.items():
            n, share = int(props.get("exposure") or 0), props.get("wipers_share")
            if n < MIN_EXPOSURE or share is None:
                continue
            inside = (
                r.start_ms <= hour
                and hour + HOUR_MS <= r.end_ms
                and d <= r.radius_m - RAIN_MARGIN_M
            )
            outside = (
                hour + HOUR_MS <= r.start_ms or hour >= r.end_ms or d >= r.radius_m + RAIN_MARGIN_M
            )
            if inside:
                wet += share >= WET_SHARE
                dry += share < WET_SHARE
            elif outside and share >= WET_SHARE:
                false_wet += 1
    if false_wet:
        out.append(f"  {false_wet} cell-hour(s) with wipers outside the rain")
    return {
        "rain_recall": round(wet / (wet + dry), 3) if wet + dry else 0.0,
        "rain_false_cells": false_wet,
    }


def signs(truth: Truth, api: Api, out: list[str]) -> dict[str, float | int | None]:
    net = truth.network()
    clusters = list(api.features("/v1/signs", {"bbox": bbox(truth)}))
    errors: list[float] = []
    right = 0
    used: set[object] = set()
    for s in truth.signs:
        near = []
        for f in clusters:
            lon, lat = f["geometry"]["coordinates"]
            d = _site_distance(net, s, lat, lon)
            if d <= SIGN_NEAR_M:
                near.append((int(f["properties"].get("observations") or 0), -d, f))
        if not near:
            out.append(f"  sign {s.id} ({s.limit_kmh} km/h) not found")
            continue
        _, neg_d, best = max(near, key=lambda x: (x[0], x[1]))
        used.add(best.get("id"))
        errors.append(-neg_d)
        if best["properties"].get("limit_kmh") == s.limit_kmh:
            right += 1
        else:
            out.append(
                f"  sign {s.id}: {best['properties'].get('limit_kmh')} km/h, planted {s.limit_kmh}"
            )
    extra = [f for f in clusters if f.get("id") not in used]
    if extra:
        out.append(
            f"  {len(extra)} sign cluster(s) beyond the best match of a planted sign"
            " (split or spurious)"
        )
    return {
        "signs_planted": len(truth.signs),
        "signs_found": len(errors),
        "signs_value_right": right,
        "sign_median_error_m": round(statistics.median(errors), 2) if errors else None,
        "sign_extra_clusters": len(extra),
    }


def site_events(truth: Truth, api: Api) -> int:
    """Located events of each site's type within ``MATCH_M`` of it, from ``/v1/events``."""
    total = 0
    for s in truth.sites:
        dlat = MATCH_M / 111_320
        dlon = dlat / math.cos(math.radians(s.lat))
        box = f"{s.lon - dlon},{s.lat - dlat},{s.lon + dlon},{s.lat + dlat}"
        params = {"type": s.event_type, "bbox": box, "since": iso(truth.start_ms), "limit": "100"}
        total += sum(1 for _ in api.features("/v1/events", params))
    return total


def road_cells(truth: Truth, api: Api) -> dict[str, Cell]:
    params = {
        "bbox": bbox(truth),
        "since": iso(truth.start_ms - truth.start_ms % HOUR_MS),
        "until": iso(truth.start_ms + int(truth.hours * HOUR_MS) + HOUR_MS),
    }
    cells: dict[str, Cell] = {}
    for f in api.features("/v1/road-conditions", params):
        p = f["properties"]
        lon, lat = p["center"]
        hour = int(dt.datetime.fromisoformat(p["hour"].replace("Z", "+00:00")).timestamp() * 1000)
        cells.setdefault(p["h3"], Cell(lat, lon)).hours[hour] = p
    return cells


def score(truth: Truth, base_url: str, token: str | None) -> int:
    api = Api(base_url, token)
    notes: list[str] = []
    try:
        cells = road_cells(truth, api)
        result: dict[str, Any] = {"cells": len(cells)}
        result |= hotspots(truth, cells, notes)
        result |= worn(truth, cells, notes)
        result |= rain(truth, cells, notes)
        result |= signs(truth, api, notes)
        result["site_events"] = site_events(truth, api)
    except httpx.HTTPError as exc:
        print(f"fleet-sim score: {base_url}: {exc}", file=sys.stderr)
        return 2
    ok = (
        result["hotspot_precision"] >= TARGET
        and result["hotspot_recall"] >= TARGET
        and result["sign_median_error_m"] is not None
        and result["sign_median_error_m"] < SIGN_TARGET_M
    )
    result["targets_met"] = ok
    r = result
    print(
        f"hotspots: precision {r['hotspot_precision']}, recall {r['hotspot_recall']}"
        f" ({r['hotspots_flagged']} flagged, {r['sites_planted']} planted, {r['cells']} cells)"
    )
    print(f"worn lanes: recall {r['worn_recall']} of {r['worn_planted']}")
    print(f"rain: recall {r['rain_recall']}, {r['rain_false_cells']} cell-hours wet outside it")
    print(
        f"signs: {r['signs_found']}/{r['signs_planted']} found,"
        f" {r['signs_value_right']} value right, median error {r['sign_median_error_m']} m"
    )
    if notes:
        print("what the API got wrong:")
        for line in notes:
            print(line)
    print(json.dumps(result))
    return 0 if ok else 1
