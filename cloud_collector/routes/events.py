"""``/v1/events``: events as GeoJSON points, oldest first, paged by cursor;
``/v1/events/{event_id}/frames``: an urgent event's raw evidence as a candump log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import PlainTextResponse, Response

from cloud_collector import geojson
from cloud_collector.auth import CallerDep, PrivacyDep
from cloud_collector.candump import candump_log
from cloud_collector.privacy import city_events_collection, city_ids, on_cells_in
from cloud_collector.roles import Role
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
    geo_off_loop,
    int_param,
    parse_bbox,
    span,
)
from cloud_collector.store.base import DEFAULT_EVENT_LIMIT, EventQuery

router = APIRouter()
# Pages larger than this are built and encoded off the event loop (``offload``).
OFF_LOOP_EVENTS = 500


@router.get("/v1/events", summary="Events as a GeoJSON FeatureCollection of points")
async def events(  # noqa: PLR0913, PLR0917 - one parameter per query parameter, plus the context
    ctx: Ctx,
    caller: CallerDep,
    privacy: PrivacyDep,
    vehicle: Annotated[str | None, Query(description="vehicle id")] = None,
    type: Annotated[str | None, Query(description="event type, e.g. fcw")] = None,
    since: Annotated[str | None, Query(description=TIME_DOC + "; inclusive")] = None,
    until: Annotated[str | None, Query(description=TIME_DOC + "; exclusive")] = None,
    bbox: Annotated[str | None, Query(description=BBOX_DOC)] = None,
    limit: Annotated[str | None, Query(description=LIMIT_DOC)] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response:
    check_id("vehicle", vehicle)
    city = caller.role is Role.CITY
    if city and vehicle is not None:
        raise HTTPException(status_code=403, detail="vehicle: not a filter of the city role")
    check_name("type", type)
    since_ms, until_ms = span(since, until)
    if cursor is not None and not 0 < len(cursor) <= CURSOR_MAX:
        raise bad("cursor", "not a cursor of this API")
    default = min(DEFAULT_EVENT_LIMIT, ctx.max_limit)
    box = parse_bbox(bbox)
    if city and cursor is not None:
        # The city's cursors are sealed: they carry no store id (``privacy.CityIds``).
        cursor = city_ids(await privacy.key()).unseal(cursor)
    q = EventQuery(
        vehicle=vehicle,
        type=type,
        since_ms=since_ms,
        until_ms=until_ms,
        bbox=None if city else box,  # the city's bbox applies to cell centres, below
        limit=int_param("limit", limit, default, 1, ctx.max_limit),
        cursor=cursor,
        fleets=caller.fleets,
        min_vehicles=privacy.k if city else 0,
    )
    page = await ctx.queries.events(q)
    caller.rows = len(page.events)
    if city:
        found = page.events if box is None else on_cells_in(page.events, box)
        caller.rows = len(found)
        return geo(city_events_collection(found, page.next_cursor, await privacy.key()))

    def build() -> dict[str, Any]:
        return geojson.events_collection(page.events, page.next_cursor)

    if len(page.events) <= OFF_LOOP_EVENTS:
        return geo(build())  # small: quicker here than waiting for the worker thread
    return await geo_off_loop(build)


@router.get(
    "/v1/events/{event_id}/frames",
    summary="An event's raw CAN evidence as a candump -L log",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "candump -L lines, oldest first"},
        404: {"description": "no such event, or no frames stored for it"},
    },
)
async def event_frames(
    ctx: Ctx,
    caller: CallerDep,
    event_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="the event's id")],
) -> PlainTextResponse:
    found = await ctx.queries.event_evidence(event_id, caller.fleets)
    if found is None:
        raise HTTPException(status_code=404, detail="event_id: unknown event")
    if not found.frames:
        # Bulk events keep none; an urgent event's may be dropped at the agent's daily cap
        # or still be on their way (they follow the event in bulk batches).
        raise HTTPException(status_code=404, detail="event_id: no raw frames stored for this event")
    caller.rows = len(found.frames)
    name = f"{found.event.vehicle}-{found.event.type}-{found.event.time_ms}.log"
    return PlainTextResponse(
        candump_log(found.frames),
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
