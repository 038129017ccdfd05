"""Records and batches for store tests: one hour start, one place (Seoul city hall), and a
way to step east by metres."""

from __future__ import annotations

import math
from typing import Any

from cloud_collector.store import aggregate as agg
from protocol.batch import Batch
from protocol.records import Event, FrameRef, GnssFix

T0 = 1_700_000_000_000 - 1_700_000_000_000 % agg.HOUR_MS  # an hour start
LAT, LON = 37.5665, 126.9780  # Seoul city hall
GRACE_MS = 600_000


def east(lat: float, lon: float, metres: float) -> tuple[float, float]:
    return lat, lon + metres / (agg.M_PER_DEG_LAT * math.cos(math.radians(lat)))


def fix(t: int, lat: float = LAT, lon: float = LON, speed_mps: float | None = 10.0) -> GnssFix:
    return GnssFix(time_ms=t, lat=lat, lon=lon, mode=3, speed_mps=speed_mps)


def event(kind: str, t: int, lat: float = LAT, lon: float = LON, **attrs: int) -> Event:
    return Event(
        type=kind,
        time_ms=t,
        speed_kmh=36.0,
        fix=fix(t, lat, lon),
        source=FrameRef("cam", 0x700),
        attrs=dict(attrs),
    )


def batch(seq: int, *, vehicle: str = "taxi-1", epoch: int = 2**64 - 5, **records: Any) -> Batch:
    if not records:
        records = {"events": [event("fcw", T0 + seq * 1000)]}
    return Batch.build(
        fleet_id="seoul", vehicle_id=vehicle, epoch=epoch, seq=seq, sent_ms=T0, **records
    )
