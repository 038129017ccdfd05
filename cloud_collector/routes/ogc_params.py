"""OGC API - Features: its query parameters, its exception JSON, its links, and the
city's view of an event.

Every parameter arrives as a string and is parsed here; a bad one raises ``OgcError``
(status 400, code ``InvalidParameterValue``), which ``routes.ogc`` answers with the OGC
exception JSON ``{"code": ..., "description": ...}`` (OGC API - Features Part 1, 7.5.1).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError

from cloud_collector import geojson
from cloud_collector.routes.params import CURSOR_MAX, parse_time
from cloud_collector.store.base import (
    DEFAULT_EVENT_LIMIT,
    HIDDEN_EVENT_KEYS,
    MAX_EVENT_LIMIT,
    BBox,
    StoredEvent,
)

BAD_PARAMETER: Final = "InvalidParameterValue"
NOT_FOUND: Final = "NotFound"
JSON_TYPE: Final = "application/json"
OPENAPI_TYPE: Final = "application/vnd.oai.openapi+json;version=3.0"
CRS84: Final = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GREGORIAN: Final = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
OPEN: Final = ".."

BBOX_DOC: Final = (
    "minlon,minlat,maxlon,maxlat (or with min and max heights, ignored) in WGS 84 degrees;"
    " minlon > maxlon (crossing the antimeridian) is a 400: send two requests"
)
DATETIME_DOC: Final = (
    "RFC 3339 instant (2026-03-02T07:30:00Z) or closed interval a/b, or open a/.. or ../b"
    " (a missing zone is UTC)"
)
LIMIT_DOC: Final = (
    f"page size, at least 1 (default {DEFAULT_EVENT_LIMIT}; above the maximum, or the"
    " collector's smaller [http] max_limit: that maximum)"
)
# An integer in the OpenAPI document, with its bounds (Part 1, /rec/core/fc-limit-
# default-maximum). The maximum is declared, not validated: a larger value is served as the
# maximum (/per/core/limit-response-1); below 1 or no integer is a 400 (``OgcRoute``).
Limit = Annotated[
    int,
    Query(ge=1, description=LIMIT_DOC, json_schema_extra={"maximum": MAX_EVENT_LIMIT}),
]
CURSOR_DOC: Final = "where the next page starts: from the next link of the previous page"
F_DOC: Final = "the encoding: json (the only one, also the default)"


class OgcError(Exception):
    """An answer in the OGC exception JSON: ``status``, ``code`` and a one-line reason."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description


def bad(param: str, why: str) -> OgcError:
    return OgcError(400, BAD_PARAMETER, f"{param}: {why}")


def exception_body(code: str, description: str) -> dict[str, str]:
    return {"code": code, "description": description}


def check_f(f: str | None) -> None:
    if f is not None and f != "json":
        raise bad("f", "only json is served")


def check_known(request: Request, known: frozenset[str]) -> None:
    """A parameter this operation does not know is a 400 (Part 1, /req/core/query-param-unknown)."""
    for name in request.query_params:
        if name not in known:
            raise bad(name, "unknown parameter; known: " + ", ".join(sorted(known)))


def parse_bbox(value: str | None) -> BBox | None:
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) not in (4, 6):
        raise bad("bbox", "expected 4 numbers (or 6, with heights)")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise bad("bbox", "expected numbers") from None
    if not all(math.isfinite(n) for n in nums):
        raise bad("bbox", "numbers must be finite")
    if len(nums) == 6:
        nums = [nums[0], nums[1], nums[3], nums[4]]
    min_lon, min_lat, max_lon, max_lat = nums
    if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180):
        raise bad("bbox", "longitudes must be within [-180, 180]")
    if not (-90 <= min_lat <= 90 and -90 <= max_lat <= 90):
        raise bad("bbox", "latitudes must be within [-90, 90]")
    if min_lon > max_lon:
        raise bad("bbox", "minlon > maxlon crosses the antimeridian: not served, send two boxes")
    if min_lat > max_lat:
        raise bad("bbox", "minlat must not exceed maxlat")
    return (min_lon, min_lat, max_lon, max_lat)


def _bound(text: str) -> int | None:
    """One end of an interval in ms; None when open."""
    if text in ("", OPEN):
        return None
    try:
        return parse_time("datetime", text)
    except HTTPException:  # params' own 400; this API answers in OGC's form
        raise bad("datetime", f"{text!r} is not an RFC 3339 time") from None


def parse_datetime(value: str | None) -> tuple[int | None, int | None]:
    """``datetime`` as [since_ms, until_ms): an instant is its millisecond, an interval's
    end is inclusive."""
    if value is None:
        return None, None
    text = value.strip()
    if "/" not in text:
        if text in ("", OPEN):
            raise bad("datetime", "an instant or an interval a/b, a/.., ../b")
        t = _bound(text)
        assert t is not None
        return t, t + 1
    start_text, _, end_text = text.partition("/")
    if "/" in end_text:
        raise bad("datetime", "an interval has one '/'")
    start, end = _bound(start_text), _bound(end_text)
    if start is not None and end is not None and start > end:
        raise bad("datetime", "the interval's start is after its end")
    return start, None if end is None else end + 1


def validation_reason(exc: RequestValidationError) -> str:
    """One line naming the parameter of a request FastAPI's validation refused."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    name = str(first.get("loc", ("?",))[-1])
    return f"{name}: {first.get('msg', 'invalid')}".replace("\n", " ")


def check_cursor(value: str | None) -> None:
    if value is not None and not 0 < len(value) <= CURSOR_MAX:
        raise bad("cursor", "not a cursor of this API")


def url(request: Request, path: str, params: dict[str, str] | None = None) -> str:
    base = str(request.base_url).rstrip("/") + path
    return f"{base}?{urlencode(params)}" if params else base


def link(href: str, rel: str, media_type: str, title: str | None = None) -> dict[str, str]:
    out = {"href": href, "rel": rel, "type": media_type}
    if title is not None:
        out["title"] = title
    return out


def city_event_feature(e: StoredEvent) -> dict[str, Any]:
    """An event as the city sees it: no vehicle id, epoch or seq."""
    feature = geojson.event_feature(e)
    props = feature["properties"]
    feature["properties"] = {k: v for k, v in props.items() if k not in HIDDEN_EVENT_KEYS}
    return feature
