"""``/v1/events``: events as GeoJSON points, oldest first, paged by cursor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from cloud_collector import geojson
from cloud_collector.routes.context import Ctx
from cloud_collector.routes.params import (
    BBOX_DOC,
    CURSOR_MAX,
    LIMIT_DOC,
    TIME_DOC,
    bad,
    check_id,
    check_name,
    geo,
    int_param,
    parse_bbox,
    span,
)
from cloud_collector.store.base import DEFAULT_EVENT_LIMIT, EventQuery

router = APIRouter()


@router.get("/v1/events", summary="Events as a GeoJSON FeatureCollection of points")
async def events(
    ctx: Ctx,
    vehicle: Annotated[str | None, Query(description="vehicle id")] = None,
    type: Annotated[str | None, Query(description="event type, e.g. fcw")] = None,
    since: Annotated[str | None, Query(description=TIME_DOC + "; inclusive")] = None,
    until: Annotated[str | None, Query(description=TIME_DOC + "; exclusive")] = None,
    bbox: Annotated[str | None, Query(description=BBOX_DOC)] = None,
    limit: Annotated[str | None, Query(description=LIMIT_DOC)] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> JSONResponse:
    check_id("vehicle", vehicle)
    check_name("type", type)
    since_ms, until_ms = span(since, until)
    if cursor is not None and not 0 < len(cursor) <= CURSOR_MAX:
        raise bad("cursor", "not a cursor of this API")
    default = min(DEFAULT_EVENT_LIMIT, ctx.max_limit)
    q = EventQuery(
        vehicle=vehicle,
        type=type,
        since_ms=since_ms,
        until_ms=until_ms,
        bbox=parse_bbox(bbox),
        limit=int_param("limit", limit, default, 1, ctx.max_limit),
        cursor=cursor,
    )
    page = await ctx.queries.events(q)
    return geo(geojson.events_collection(page.events, page.next_cursor))
