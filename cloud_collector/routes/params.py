"""Query and path parameters, parsed by hand.

Every query parameter arrives as a string and is parsed here, so that a bad one gets a 400
with a JSON ``{"detail": reason}`` naming the parameter, never a 500.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from fastapi import HTTPException
from fastapi.responses import JSONResponse, Response

from cloud_collector.offload import off_loop
from cloud_collector.store.base import BBox
from protocol.limits import MAX_TIME_MS

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NAME_MAX: Final = 128
CURSOR_MAX: Final = 512
GEOJSON: Final = "application/geo+json"

TIME_DOC: Final = "ISO 8601 time, e.g. 2026-03-02T07:30:00Z (no zone: UTC)"
LIMIT_DOC: Final = "page size, 1 to the configured maximum (default 100)"
BBOX_DOC: Final = "minlon,minlat,maxlon,maxlat in WGS 84 degrees (no antimeridian crossing)"


def bad(param: str, why: str) -> HTTPException:
    return HTTPException(status_code=400, detail=f"{param}: {why}")


def geo(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, media_type=GEOJSON)


def geo_fast(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """A GeoJSON answer encoded by orjson: a page of polygons encodes several times faster
    than with ``json``. Same JSON values (numbers may be spelt differently, e.g. ``1e-5``);
    a body never holds NaN (a share without passes is null)."""
    return Response(orjson.dumps(body), media_type=GEOJSON, headers=headers)


def _encode(build: Callable[[], dict[str, Any]]) -> bytes:
    # As JSONResponse encodes.
    body = build()
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def geo_off_loop(build: Callable[[], dict[str, Any]]) -> Response:
    """A GeoJSON answer built and encoded off the event loop (``offload``)."""
    return Response(await off_loop(lambda: _encode(build)), media_type=GEOJSON)


def parse_time(param: str, value: str | None) -> int | None:
    """ISO 8601 to ms since the Unix epoch; a time without a zone is UTC."""
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise bad(param, "not an ISO 8601 time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    except OverflowError:
        raise bad(param, "out of range") from None
    ms = delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
    if not 0 <= ms <= MAX_TIME_MS:
        raise bad(param, "before 1970 or out of range")
    return ms


def parse_bbox(value: str | None) -> BBox | None:
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 4:
        raise bad("bbox", "expected minlon,minlat,maxlon,maxlat")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise bad("bbox", "expected four numbers") from None
    if not all(math.isfinite(n) for n in nums):
        raise bad("bbox", "numbers must be finite")
    min_lon, min_lat, max_lon, max_lat = nums
    if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180):
        raise bad("bbox", "longitudes must be within [-180, 180]")
    if not (-90 <= min_lat <= 90 and -90 <= max_lat <= 90):
        raise bad("bbox", "latitudes must be within [-90, 90]")
    if min_lon > max_lon or min_lat > max_lat:
        raise bad("bbox", "min must not exceed max")
    return (min_lon, min_lat, max_lon, max_lat)


def span(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    since_ms, until_ms = parse_time("since", since), parse_time("until", until)
    if since_ms is not None and until_ms is not None and since_ms > until_ms:
        raise bad("since", "must not be after until")
    return since_ms, until_ms


def check_id(param: str, value: str | None) -> None:
    if value is not None and not _ID.match(value):
        raise bad(param, "1-64 characters of A-Z a-z 0-9 _ -")


def check_name(param: str, value: str | None) -> None:
    if value is not None and not (0 < len(value.encode()) <= _NAME_MAX and value.isprintable()):
        raise bad(param, f"1-{_NAME_MAX} bytes of printable text")


def int_param(param: str, value: str | None, default: int, lo: int, hi: int) -> int:
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise bad(param, "not an integer") from None
    if not lo <= n <= hi:
        raise bad(param, f"must be within [{lo}, {hi}]")
    return n
