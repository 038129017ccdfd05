"""What the city role sees of events: no vehicle id, fleet, epoch or seq; a pseudonym
that changes every UTC day in the vehicle's place; the position rounded to the centre of
the res-10 H3 cell the road aggregates use. Which events it sees at all (k-anonymous
cell-hours) is decided in the query (``EventQuery.min_vehicles``).

The pseudonym is HMAC-SHA256 of the vehicle id and the UTC day under a secret key,
truncated to 64 bits: stable within a day (one taxi's events of a day go together),
unlinkable to the next day's without the key.

An event's time is given to the minute (``city_time_ms``), and its id is not the store's:
``CityIds`` enciphers the UTC day and the store id under a key derived from the same
secret (a keyed permutation of 128 bits: without the key the id tells nothing, neither
the store id nor how many events lie between two of them; with it the collector finds the
event again for ``/ogc/.../items/{featureId}``). The paging cursors the city gets are
sealed the same way, with a tag, so they carry no store id either.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

import h3

from cloud_collector.errors import QueryError
from cloud_collector.geojson import JSON, iso_ms
from cloud_collector.store import aggregate as agg
from cloud_collector.store.base import BBox, StoredEvent, utc_day
from cloud_collector.store.reads import decode_cursor, encode_cursor

PSEUDONYM_HEX: Final = 16
# The city's event times are floored to this: enough to tell the hour's peaks and to line
# an event up with a traffic signal plan or an incident report, too coarse to pick a taxi
# out by matching exact times against another record of its trip (docs/access.md).
CITY_TIME_MS: Final = 60_000
DAY_MS: Final = 86_400_000
# Rounds of the Feistel permutation over two 64-bit halves, each a keyed BLAKE2b
# (Luby-Rackoff: 4 rounds of a PRF make a strong pseudorandom permutation).
_ROUNDS: Final = 4
# The middle of an enciphered event id: tells an id of this API from any other 128 bits.
_ID_MARK: Final = b"evid"
_TAG_BYTES: Final = 8
# Properties of a city event the collector sets; an attribute of the same name is kept
# under "attr_<name>".
_FIXED: Final = frozenset({"type", "time", "pseudonym", "speed_kmh", "h3"})
# Event attributes never shown to the city (identifying or linking a vehicle).
_HIDDEN_ATTRS: Final = frozenset({"vehicle", "vehicle_id", "fleet", "epoch", "seq"})


def pseudonym(key: bytes, vehicle: str, time_ms: int) -> str:
    """The vehicle's pseudonym on the UTC day of ``time_ms``."""
    message = f"{utc_day(time_ms)}\x00{vehicle}".encode()
    return "p" + hmac.new(key, message, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


def city_time_ms(time_ms: int) -> int:
    """What the city sees of an event's time: the start of its minute."""
    return time_ms - time_ms % CITY_TIME_MS


def day_number(time_ms: int) -> int:
    """The UTC day of ``time_ms`` as a 32-bit number (days since 1970, modulo 2^32)."""
    return (time_ms // DAY_MS) & 0xFFFF_FFFF


class CityIds:
    """The city's event ids and sealed cursors under subkeys of the pseudonym ``key``."""

    def __init__(self, key: bytes) -> None:
        self._rounds = [
            hmac.new(key, b"city-ids\x00" + bytes([i]), hashlib.sha256).digest()
            for i in range(_ROUNDS)
        ]
        self._tag_key = hmac.new(key, b"city-cursor-tag", hashlib.sha256).digest()

    def _f(self, i: int, half: int) -> int:
        """Round ``i``'s function: keyed BLAKE2b (a PRF) of the half, 64 bits."""
        digest = hashlib.blake2b(half.to_bytes(8), key=self._rounds[i], digest_size=8).digest()
        return int.from_bytes(digest)

    def _encipher(self, block: bytes) -> bytes:
        left, right = int.from_bytes(block[:8]), int.from_bytes(block[8:])
        for i in range(_ROUNDS):
            left, right = right, left ^ self._f(i, right)
        return left.to_bytes(8) + right.to_bytes(8)

    def _decipher(self, block: bytes) -> bytes:
        left, right = int.from_bytes(block[:8]), int.from_bytes(block[8:])
        for i in reversed(range(_ROUNDS)):
            left, right = right ^ self._f(i, left), left
        return left.to_bytes(8) + right.to_bytes(8)

    def event_id(self, event_id: int, time_ms: int) -> str:
        """The id the city sees of store event ``event_id`` (at ``time_ms``)."""
        return self._encipher(struct.pack(">I4sq", day_number(time_ms), _ID_MARK, event_id)).hex()

    def event_of(self, text: str) -> tuple[int, int] | None:
        """``(day_number, store id)`` of an id ``event_id`` made; None for any other."""
        if len(text) != 32:
            return None
        try:
            block = bytes.fromhex(text)
        except ValueError:
            return None
        day, mark, event_id = struct.unpack(">I4sq", self._decipher(block))
        return (day, event_id) if mark == _ID_MARK else None

    def seal(self, cursor: str) -> str:
        """A store events cursor as the city gets it."""
        block = self._encipher(struct.pack(">qq", *decode_cursor(cursor)))
        tag = hmac.new(self._tag_key, block, hashlib.sha256).digest()[:_TAG_BYTES]
        return base64.urlsafe_b64encode(block + tag).decode().rstrip("=")

    def unseal(self, text: str) -> str:
        """The store cursor of a cursor ``seal`` made; a ``QueryError`` (400) otherwise."""
        try:
            raw = base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii"))
        except (ValueError, binascii.Error, UnicodeError) as exc:
            raise QueryError("cursor: not a cursor of this API") from exc
        block, tag = raw[:16], raw[16:]
        want = hmac.new(self._tag_key, block, hashlib.sha256).digest()[:_TAG_BYTES]
        if len(raw) != 16 + _TAG_BYTES or not hmac.compare_digest(tag, want):
            raise QueryError("cursor: not a cursor of this API")
        return encode_cursor(*struct.unpack(">qq", self._decipher(block)))


@functools.lru_cache(maxsize=8)
def city_ids(key: bytes) -> CityIds:
    """``CityIds`` of ``key`` (its subkeys made once)."""
    return CityIds(key)


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
        "time": iso_ms(city_time_ms(e.time_ms)),
        "pseudonym": pseudonym(key, e.vehicle, e.time_ms),
        "speed_kmh": e.speed_kmh,
        "h3": cell_text,
    }
    for name, value in sorted(e.attrs.items()):
        if name not in _HIDDEN_ATTRS:
            props[f"attr_{name}" if name in _FIXED else name] = value
    feature_id = city_ids(key).event_id(e.id, e.time_ms)
    return {"type": "Feature", "id": feature_id, "geometry": geometry, "properties": props}


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
    """``next_cursor``: the store's (sealed here)."""
    return {
        "type": "FeatureCollection",
        "features": [city_event_feature(e, key) for e in events],
        "next_cursor": None if next_cursor is None else city_ids(key).seal(next_cursor),
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
