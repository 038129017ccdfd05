"""The HTTP API for a city's traffic backend (FastAPI; OpenAPI at /openapi.json).

Every query parameter arrives as a string and is parsed here, so that a bad one gets a 400
with a JSON ``{"detail": reason}`` naming the parameter, never a 500. Store failures that
are nobody's input error (database down) are a 503.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from cloud_collector import alerts as al
from cloud_collector import geojson
from cloud_collector.config import AlertsConfig
from cloud_collector.dashboard import mount_dashboard
from cloud_collector.errors import QueryError, StoreError
from cloud_collector.metrics import CONTENT_TYPE, FleetFigures, IngestMetrics, render
from cloud_collector.store.base import (
    DEFAULT_EVENT_LIMIT,
    DEFAULT_HEALTH_LIMIT,
    MAX_EVENT_LIMIT,
    BBox,
    EventQuery,
    HealthQuery,
    RoadQuery,
    Store,
    VehicleHealth,
)
from protocol.limits import MAX_TIME_MS

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NAME_MAX: Final = 128
_CURSOR_MAX: Final = 512
GEOJSON: Final = "application/geo+json"

_TIME_DOC = "ISO 8601 time, e.g. 2026-03-02T07:30:00Z (no zone: UTC)"
_LIMIT_DOC = "page size, 1 to the configured maximum (default 100)"
_BBOX_DOC = "minlon,minlat,maxlon,maxlat in WGS 84 degrees (no antimeridian crossing)"


def _bad(param: str, why: str) -> HTTPException:
    return HTTPException(status_code=400, detail=f"{param}: {why}")


def parse_time(param: str, value: str | None) -> int | None:
    """ISO 8601 to ms since the Unix epoch; a time without a zone is UTC."""
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _bad(param, "not an ISO 8601 time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    except OverflowError:
        raise _bad(param, "out of range") from None
    ms = delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
    if not 0 <= ms <= MAX_TIME_MS:
        raise _bad(param, "before 1970 or out of range")
    return ms


def parse_bbox(value: str | None) -> BBox | None:
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 4:
        raise _bad("bbox", "expected minlon,minlat,maxlon,maxlat")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise _bad("bbox", "expected four numbers") from None
    if not all(math.isfinite(n) for n in nums):
        raise _bad("bbox", "numbers must be finite")
    min_lon, min_lat, max_lon, max_lat = nums
    if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180):
        raise _bad("bbox", "longitudes must be within [-180, 180]")
    if not (-90 <= min_lat <= 90 and -90 <= max_lat <= 90):
        raise _bad("bbox", "latitudes must be within [-90, 90]")
    if min_lon > max_lon or min_lat > max_lat:
        raise _bad("bbox", "min must not exceed max")
    return (min_lon, min_lat, max_lon, max_lat)


def _span(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    since_ms, until_ms = parse_time("since", since), parse_time("until", until)
    if since_ms is not None and until_ms is not None and since_ms > until_ms:
        raise _bad("since", "must not be after until")
    return since_ms, until_ms


def _check_id(param: str, value: str | None) -> None:
    if value is not None and not _ID.match(value):
        raise _bad(param, "1-64 characters of A-Z a-z 0-9 _ -")


def _check_name(param: str, value: str | None) -> None:
    if value is not None and not (0 < len(value.encode()) <= _NAME_MAX and value.isprintable()):
        raise _bad(param, f"1-{_NAME_MAX} bytes of printable text")


def _int(param: str, value: str | None, default: int, lo: int, hi: int) -> int:
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise _bad(param, "not an integer") from None
    if not lo <= n <= hi:
        raise _bad(param, f"must be within [{lo}, {hi}]")
    return n


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def create_app(
    store: Store,
    metrics: IngestMetrics | None = None,
    *,
    mqtt_ready: Callable[[], bool] = lambda: True,
    max_limit: int = MAX_EVENT_LIMIT,
    thresholds: AlertsConfig | None = None,
    clock_ms: Callable[[], int] = _wall_ms,
) -> FastAPI:
    """The app over ``store``; ``mqtt_ready`` tells /readyz whether ingest is connected;
    ``thresholds`` are the alert thresholds, ``clock_ms`` the wall clock they are
    evaluated against."""
    app = FastAPI(
        title="Taxi ADAS cloud collector",
        version="1",
        description="Events, road conditions, signs and vehicle uplink health as GeoJSON.",
    )
    counters = metrics if metrics is not None else IngestMetrics()
    max_limit = min(max_limit, MAX_EVENT_LIMIT)
    limits = thresholds if thresholds is not None else AlertsConfig()

    def evaluated(
        states: list[VehicleHealth], now_ms: int
    ) -> list[tuple[VehicleHealth, al.Derived, list[al.Alert]]]:
        return [
            (
                h,
                al.derive(h, now_ms, limits),
                al.evaluate_alerts(h, h.latest_health, now_ms, limits),
            )
            for h in states
        ]

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, 400)

    @app.exception_handler(QueryError)
    async def _query(_: Request, exc: QueryError) -> JSONResponse:
        return JSONResponse({"detail": str(exc) or "invalid query"}, 400)

    @app.exception_handler(StoreError)
    async def _store(_: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": f"store unavailable: {type(exc).__name__}"}, 503)

    def geo(body: dict[str, Any]) -> JSONResponse:
        return JSONResponse(body, media_type=GEOJSON)

    @app.get("/v1/events", summary="Events as a GeoJSON FeatureCollection of points")
    async def events(  # noqa: PLR0917 - one parameter per query key
        vehicle: Annotated[str | None, Query(description="vehicle id")] = None,
        type: Annotated[str | None, Query(description="event type, e.g. fcw")] = None,
        since: Annotated[str | None, Query(description=_TIME_DOC + "; inclusive")] = None,
        until: Annotated[str | None, Query(description=_TIME_DOC + "; exclusive")] = None,
        bbox: Annotated[str | None, Query(description=_BBOX_DOC)] = None,
        limit: Annotated[str | None, Query(description=_LIMIT_DOC)] = None,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> JSONResponse:
        _check_id("vehicle", vehicle)
        _check_name("type", type)
        since_ms, until_ms = _span(since, until)
        if cursor is not None and not 0 < len(cursor) <= _CURSOR_MAX:
            raise _bad("cursor", "not a cursor of this API")
        q = EventQuery(
            vehicle=vehicle,
            type=type,
            since_ms=since_ms,
            until_ms=until_ms,
            bbox=parse_bbox(bbox),
            limit=_int("limit", limit, min(DEFAULT_EVENT_LIMIT, max_limit), 1, max_limit),
            cursor=cursor,
        )
        page = await store.events(q)
        return geo(geojson.events_collection(page.events, page.next_cursor))

    @app.get("/v1/road-conditions", summary="Hourly aggregates per H3 cell, as polygons")
    async def road_conditions(
        bbox: Annotated[str | None, Query(description=_BBOX_DOC)] = None,
        since: Annotated[str | None, Query(description=_TIME_DOC + "; hour start >=")] = None,
        until: Annotated[str | None, Query(description=_TIME_DOC + "; hour start <")] = None,
        type: Annotated[str | None, Query(description="restrict counts to one type")] = None,
        min_exposure: Annotated[str | None, Query(description="minimum passes, >= 0")] = None,
    ) -> JSONResponse:
        _check_name("type", type)
        since_ms, until_ms = _span(since, until)
        q = RoadQuery(
            bbox=parse_bbox(bbox),
            since_ms=since_ms,
            until_ms=until_ms,
            type=type,
            min_exposure=_int("min_exposure", min_exposure, 1, 0, 2**31 - 1),
        )
        return geo(geojson.road_collection(await store.road_conditions(q)))

    @app.get("/v1/signs", summary="Traffic sign clusters as GeoJSON points")
    async def signs(
        bbox: Annotated[str | None, Query(description=_BBOX_DOC)] = None,
    ) -> JSONResponse:
        return geo(geojson.signs_collection(await store.signs(parse_bbox(bbox))))

    @app.get("/v1/vehicles", summary="Every known vehicle's uplink health and alerts")
    async def vehicles() -> JSONResponse:
        rows = evaluated(await store.vehicle_health(), clock_ms())
        return JSONResponse(
            {"vehicles": [geojson.vehicle_health_json(h.status, d, a) for h, d, a in rows]}
        )

    @app.get("/v1/vehicles/{vehicle_id}", summary="One vehicle's uplink health and alerts")
    async def vehicle(
        vehicle_id: Annotated[str, Path(description="vehicle id")],
    ) -> JSONResponse:
        _check_id("vehicle_id", vehicle_id)
        rows = evaluated(await store.vehicle_health(vehicle_id), clock_ms())
        if not rows:
            raise HTTPException(status_code=404, detail="vehicle_id: unknown vehicle")
        h, d, a = rows[0]
        return JSONResponse(geojson.vehicle_health_json(h.status, d, a))

    @app.get(
        "/v1/vehicles/{vehicle_id}/health",
        summary="One vehicle's health snapshots as a time series, oldest first",
    )
    async def vehicle_health(
        vehicle_id: Annotated[str, Path(description="vehicle id")],
        since: Annotated[str | None, Query(description=_TIME_DOC + "; inclusive")] = None,
        until: Annotated[str | None, Query(description=_TIME_DOC + "; exclusive")] = None,
        limit: Annotated[
            str | None,
            Query(description="the latest N snapshots of the window, 1 to the maximum"),
        ] = None,
    ) -> JSONResponse:
        _check_id("vehicle_id", vehicle_id)
        since_ms, until_ms = _span(since, until)
        n = _int("limit", limit, min(DEFAULT_HEALTH_LIMIT, max_limit), 1, max_limit)
        if await store.vehicle(vehicle_id) is None:
            raise HTTPException(status_code=404, detail="vehicle_id: unknown vehicle")
        points = await store.health_history(
            HealthQuery(vehicle=vehicle_id, since_ms=since_ms, until_ms=until_ms, limit=n)
        )
        return JSONResponse([geojson.health_point_json(p) for p in points])

    @app.get("/v1/alerts", summary="Active vehicle health alerts")
    async def alerts(
        vehicle: Annotated[str | None, Query(description="vehicle id")] = None,
        kind: Annotated[str | None, Query(description="one of: " + ", ".join(al.KINDS))] = None,
    ) -> JSONResponse:
        _check_id("vehicle", vehicle)
        if kind is not None and kind not in al.KINDS:
            raise _bad("kind", "one of " + ", ".join(al.KINDS))
        rows = evaluated(await store.vehicle_health(vehicle), clock_ms())
        return JSONResponse(
            [
                geojson.alert_json(a)
                for _, _, found in rows
                for a in found
                if kind is None or a.kind == kind
            ]
        )

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Store reachable and MQTT connected")
    async def readyz() -> JSONResponse:
        problems: list[str] = []
        try:
            await store.ping()
        except StoreError as exc:
            problems.append(f"store: {type(exc).__name__}")
        if not mqtt_ready():
            problems.append("mqtt: not connected")
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, 503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", summary="Prometheus text exposition", response_class=PlainTextResponse)
    async def metrics_text() -> Response:
        try:
            store_figures: dict[str, int | float] = await store.metrics()
        except StoreError:
            store_figures = {}
        fleet: FleetFigures | None = None
        try:
            rows = evaluated(await store.vehicle_health(), clock_ms())
        except StoreError:
            rows = []
        else:
            fleet = FleetFigures.of([(h.status.vehicle, d, a) for h, d, a in rows])
        return Response(render(counters, store_figures, fleet), media_type=CONTENT_TYPE)

    mount_dashboard(app)  # GET /: the operator dashboard
    return app
