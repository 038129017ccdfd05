"""What the city role sees of events: no vehicle id, fleet, epoch or seq; a pseudonym
that changes every UTC day in the vehicle's place; the position rounded to the centre of
the res-10 H3 cell the road aggregates use. Which events it sees at all (k-anonymous
cell-hours) is decided in the query (``EventQuery.min_vehicles``).

The pseudonym is HMAC-SHA256 of the vehicle id and the UTC day under a secret key,
truncated to 64 bits: stable within a day (one taxi's events of a day go together),
unlinkable to the next day's without the key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import h3

from cloud_collector.geojson import JSON, iso_ms
from cloud_collector.store import aggregate as agg
from cloud_collector.store.base import BBox, StoredEvent, utc_day

PSEUDONYM_HEX: Final = 16
# Properties of a city event the collector sets; an attribute of the same name is kept
# under "attr_<name>".
_FIXED: Final = frozenset({"type", "time", "pseudonym", "speed_kmh", "h3"})
# Event attributes never shown to the city (identifying or linking a vehicle).
_HIDDEN_ATTRS: Final = frozenset({"vehicle", "vehicle_id", "fleet", "epoch", "seq"})


def pseudonym(key: bytes, vehicle: str, time_ms: int) -> str:
    """The vehicle's pseudonym on the UTC day of ``time_ms``."""
    message = f"{utc_day(time_ms)}\x00{vehicle}".encode()
    return "p" + hmac.new(key, message, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


def city_event_feature(e: StoredEvent, key: bytes) -> JSON:
    """``e`` as the city sees it (located events only: the query drops the others)."""
    geometry = None
    cell_text = None
    if e.h3_12 is not None:
        cell = agg.parent(e.h3_12)
        lat, lon = agg.centre(cell)
        geometry = {"type": "Point", "coordinates": [lon, lat]}
        cell_text = h3.int_to_str(cell)
    props: JSON = {
        "type": e.type,
        "time": iso_ms(e.time_ms),
        "pseudonym": pseudonym(key, e.vehicle, e.time_ms),
        "speed_kmh": e.speed_kmh,
        "h3": cell_text,
    }
    for name, value in sorted(e.attrs.items()):
        if name not in _HIDDEN_ATTRS:
            props[f"attr_{name}" if name in _FIXED else name] = value
    return {"type": "Feature", "id": e.id, "geometry": geometry, "properties": props}


def on_cells_in(events: list[StoredEvent], bbox: BBox) -> list[StoredEvent]:
    """The events whose cell centre (what the city sees of their position) lies in
    ``bbox``: a bbox around the exact position would tell more than the cell."""
    min_lon, min_lat, max_lon, max_lat = bbox
    kept = []
    for e in events:
        if e.h3_12 is None:
            continue
        lat, lon = agg.centre(agg.parent(e.h3_12))
        if min_lat <= lat <= max_lat and min_lon <= lon <= max_lon:
            kept.append(e)
    return kept


def city_events_collection(events: list[StoredEvent], next_cursor: str | None, key: bytes) -> JSON:
    return {
        "type": "FeatureCollection",
        "features": [city_event_feature(e, key) for e in events],
        "next_cursor": next_cursor,
    }


@dataclass(slots=True)
class Privacy:
    """The city view's settings: ``k`` distinct vehicles per cell-hour, and the pseudonym
    key (``configured``, else ``load`` reads, or creates, the one kept in the store)."""

    k: int
    configured: bytes | None
    load: Callable[[], Awaitable[str]]
    _key: bytes | None = field(default=None)

    async def key(self) -> bytes:
        if self._key is None:
            self._key = self.configured if self.configured else (await self.load()).encode()
        return self._key
