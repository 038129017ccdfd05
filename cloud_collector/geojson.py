"""Store rows to GeoJSON (RFC 7946) and JSON; pure functions.

Coordinates are ``[lon, lat]`` (RFC 7946 order); a polygon ring is closed and
counter-clockwise as the RFC asks. Times are ISO 8601 UTC with milliseconds and ``Z``,
like ``edge-agent decode`` prints them, so the two outputs compare directly.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Final

import h3
import orjson

from cloud_collector.alerts import Alert, Derived
from cloud_collector.store.base import (
    CellHour,
    HealthPoint,
    SignCluster,
    StoredEvent,
    VehicleStatus,
)

JSON = dict[str, Any]
# Distinct res-10 cells whose H3 text and polygon JSON are kept (a city has some 10^4 to
# 10^5 with data; about 0.5 kB each), and hour-start texts (a month of hours).
CELL_CACHE: Final = 65_536
HOUR_CACHE: Final = 1_024
# Event properties the collector sets itself; an attribute of the same name is kept under
# "attr_<name>" rather than silently overwriting or being overwritten.
_FIXED: Final = frozenset(
    {"type", "time", "vehicle", "fleet", "speed_kmh", "bus", "can_id", "epoch", "seq", "h3"}
)


def _civil(days: int) -> tuple[int, int, int]:
    """Year, month, day of ``days`` since 1970-01-01 (proleptic Gregorian, any year).

    H. Hinnant's ``civil_from_days``; datetime stops at year 9999, but protocol times run
    to 2**53 - 1 ms (year ~285,000) and a taxi with a broken clock may send one.
    """
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def iso_ms(time_ms: int) -> str:
    """``2026-03-02T07:30:19.055Z``; integer arithmetic, so no float rounding. Years past
    9999 use ISO 8601's expanded form (``+285428-...``)."""
    days, ms = divmod(time_ms, 86_400_000)
    year, month, day = _civil(days)
    secs, milli = divmod(ms, 1000)
    hh, rest = divmod(secs, 3600)
    mm, ss = divmod(rest, 60)
    ytext = f"{year:04d}" if 0 <= year <= 9999 else f"{year:+07d}"
    return f"{ytext}-{month:02d}-{day:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{milli:03d}Z"


def _point(lat: float | None, lon: float | None) -> JSON | None:
    if lat is None or lon is None:
        return None
    return {"type": "Point", "coordinates": [lon, lat]}


def event_feature(e: StoredEvent) -> JSON:
    props: JSON = {
        "type": e.type,
        "time": iso_ms(e.time_ms),
        "vehicle": e.vehicle,
        "fleet": e.fleet,
        "speed_kmh": e.speed_kmh,
        "bus": e.source_bus,
        "can_id": None if e.source_id is None else f"0x{e.source_id:x}",
        "h3": None if e.h3_12 is None else h3.int_to_str(e.h3_12),
    }
    for key, value in sorted(e.attrs.items()):
        props[f"attr_{key}" if key in _FIXED else key] = value
    return {"type": "Feature", "id": e.id, "geometry": _point(e.lat, e.lon), "properties": props}


def events_collection(events: list[StoredEvent], next_cursor: str | None) -> JSON:
    """A FeatureCollection of points; ``next_cursor`` (a foreign member) pages forward."""
    return {
        "type": "FeatureCollection",
        "features": [event_feature(e) for e in events],
        "next_cursor": next_cursor,
    }


def cell_polygon(cell: int) -> JSON:
    """The H3 cell's boundary as a closed, counter-clockwise GeoJSON ring."""
    boundary = h3.cell_to_boundary(h3.int_to_str(cell))  # ((lat, lng), ...)
    ring = [[lng, lat] for lat, lng in boundary]
    if _signed_area(ring) < 0:
        ring.reverse()
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def _signed_area(ring: list[list[float]]) -> float:
    total = 0.0
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        total += x1 * y2 - x2 * y1
    return total / 2


def _road_properties(c: CellHour) -> JSON:
    """The properties after ``h3`` and ``hour``, in their order."""
    return {
        "center": [c.lon, c.lat],
        "counts": dict(sorted(c.counts.items())),
        "exposure": c.exposure,
        "hotspot_rate": c.hotspot_rate,
        "mean_speed_kmh": c.mean_speed_kmh,
        "wipers_share": c.wipers_share,
        "failsafe_share": c.failsafe_share,
        "lane_quality_share": c.lane_quality_share,
    }


def road_feature(c: CellHour) -> JSON:
    text = h3.int_to_str(c.cell)
    return {
        "type": "Feature",
        "id": f"{text}@{c.hour_ms}",
        "geometry": cell_polygon(c.cell),
        "properties": {"h3": text, "hour": iso_ms(c.hour_ms), **_road_properties(c)},
    }


@lru_cache(maxsize=CELL_CACHE)
def _cell_json(cell: int) -> tuple[bytes, bytes]:
    """The cell's H3 text and its polygon as JSON. A cell recurs in every hour it has
    data, and its boundary costs more than the rest of a feature."""
    # json, not orjson: its result is the exact size (orjson's kept ~1.4 kB per cell).
    polygon = json.dumps(cell_polygon(cell), separators=(",", ":"), allow_nan=False)
    return h3.int_to_str(cell).encode(), polygon.encode()


@lru_cache(maxsize=HOUR_CACHE)
def _hour_json(hour_ms: int) -> bytes:
    return iso_ms(hour_ms).encode()


def road_feature_json(c: CellHour) -> orjson.Fragment:
    """``road_feature(c)`` as JSON text, ready to embed in a body that orjson encodes: the
    cell's part is cached, the rest is one small dict (a page of 10^3 cell-hours is the
    city's first answer, and building nested dicts per row dominated its cost)."""
    text, polygon = _cell_json(c.cell)
    rest = orjson.dumps(_road_properties(c))
    return orjson.Fragment(
        b'{"type":"Feature","id":"%s@%d","geometry":%s,"properties":{"h3":"%s","hour":"%s",%s}'
        % (text, c.hour_ms, polygon, text, _hour_json(c.hour_ms), rest[1:])
    )


def road_collection(cells: list[CellHour]) -> JSON:
    return {"type": "FeatureCollection", "features": [road_feature(c) for c in cells]}


def sign_feature(s: SignCluster) -> JSON:
    return {
        "type": "Feature",
        "id": s.id,
        "geometry": _point(s.lat, s.lon),
        "properties": {
            "sign_type": s.sign_type,
            "limit_kmh": s.limit_kmh,
            "observations": s.observations,
            "vehicles": s.vehicles,
            "first_seen": iso_ms(s.first_seen_ms),
            "last_seen": iso_ms(s.last_seen_ms),
        },
    }


def signs_collection(signs: list[SignCluster]) -> JSON:
    return {"type": "FeatureCollection", "features": [sign_feature(s) for s in signs]}


def _opt_iso(ms: int | None) -> str | None:
    return None if ms is None else iso_ms(ms)


def vehicle_json(v: VehicleStatus) -> JSON:
    """A vehicle's uplink health; ``epoch`` as decimal text (it is an unsigned 64-bit id,
    beyond what JSON numbers carry exactly)."""
    state = "unknown" if v.online is None else ("online" if v.online else "offline")
    return {
        "vehicle": v.vehicle,
        "fleet": v.fleet,
        "state": state,
        "presence_time": _opt_iso(v.presence_ms),
        "last_seen": _opt_iso(v.last_seen_ms),
        "last_epoch": None if v.last_epoch is None else str(v.last_epoch),
        "last_seq": v.last_seq,
        "lag_ms": v.lag_ms,
        "day": v.day,
        "batches_today": v.batches_today,
        "bytes_today": v.bytes_today,
        "batches_total": v.batches_total,
        "bytes_total": v.bytes_total,
        "records_total": v.records_total,
        "duplicates": v.duplicates,
        "quarantined": v.quarantined,
        **{f"extra_{k}": n for k, n in sorted(v.extra.items())},
    }


def alert_json(a: Alert) -> JSON:
    return {
        "vehicle": a.vehicle,
        "kind": a.kind,
        "severity": a.severity,
        "since": iso_ms(a.since_ms),
        "since_ms": a.since_ms,
        "message": a.message,
        "value": a.value,
    }


def vehicle_health_json(v: VehicleStatus, d: Derived, alerts: list[Alert]) -> JSON:
    """``vehicle_json`` plus the derived health figures and the vehicle's active alerts."""
    return {
        **vehicle_json(v),
        "status": d.status,
        "backlog_batches": d.backlog_batches,
        "backlog_age_s": d.backlog_age_s,
        "data_today_bytes": d.data_today_bytes,
        "data_month_bytes": d.data_month_bytes,
        "data_month_projected_bytes": round(d.data_month_projected_bytes),
        "lag_s": d.lag_s,
        "seq_gaps": d.seq_gaps,
        "duplicate_ratio": d.duplicate_ratio,
        "clock_ahead_s": d.clock_ahead_s,
        "alerts": [alert_json(a) for a in alerts],
    }


def health_point_json(p: HealthPoint) -> JSON:
    out: JSON = {"time": iso_ms(p.time_ms), "time_ms": p.time_ms, "values": p.values}
    if p.count is not None:
        out.update(count=p.count, min=p.low, max=p.high)
    return out
