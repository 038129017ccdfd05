"""``/v1/road-conditions``: hourly aggregates per H3 cell, as GeoJSON polygons, in pages.

Cell-hours come in (hour, cell) order, ``limit`` per page (default ``DEFAULT_ROAD_LIMIT``,
at most the configured maximum page size); ``next_cursor`` (and a ``links`` entry and a
``Link`` header with ``rel="next"``) names the next page, None on the last. A caller that
passes no cursor gets the first page: a full read follows the next links, and neither
the collector nor the client ever holds the whole result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from cloud_collector import geojson
from cloud_collector.auth import CallerDep, PrivacyDep
from cloud_collector.roles import Role
from cloud_collector.routes.context import Ctx
from cloud_collector.routes.params import (
    BBOX_DOC,
    CURSOR_MAX,
    GEOJSON,
    LIMIT_DOC,
    TIME_DOC,
    bad,
    check_name,
    geo_fast,
    int_param,
    parse_bbox,
    span,
)
from cloud_collector.store.base import RoadQuery
from cloud_collector.store.reads import cell_cursor

DEFAULT_ROAD_LIMIT = 500  # ~340 kB of GeoJSON, 14-21 ms of collector CPU (BENCHMARKS.md)

router = APIRouter()


@dataclass(frozen=True, slots=True)
class PageParams:
    limit: str | None
    cursor: str | None


def page_params(
    limit: Annotated[
        str | None, Query(description=LIMIT_DOC.replace("100", str(DEFAULT_ROAD_LIMIT)))
    ] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> PageParams:
    """``limit`` and ``cursor`` (a FastAPI dependency; parsed in the endpoint)."""
    return PageParams(limit, cursor)


Paging = Annotated[PageParams, Depends(page_params)]


@router.get(
    "/v1/road-conditions", summary="Hourly aggregates per H3 cell, as polygons, paged by cursor"
)
async def road_conditions(  # noqa: PLR0913, PLR0917 - one parameter per query parameter
    ctx: Ctx,
    request: Request,
    paging: Paging,
    caller: CallerDep,
    privacy: PrivacyDep,
    bbox: Annotated[str | None, Query(description=BBOX_DOC)] = None,
    since: Annotated[str | None, Query(description=TIME_DOC + "; hour start >=")] = None,
    until: Annotated[str | None, Query(description=TIME_DOC + "; hour start <")] = None,
    type: Annotated[str | None, Query(description="restrict counts to one type")] = None,
    min_exposure: Annotated[str | None, Query(description="minimum passes, >= 0")] = None,
) -> Response:
    check_name("type", type)
    since_ms, until_ms = span(since, until)
    cursor = paging.cursor
    if cursor is not None and not 0 < len(cursor) <= CURSOR_MAX:
        raise bad("cursor", "not a cursor of this API")
    limit = paging.limit
    size = int_param("limit", limit, min(DEFAULT_ROAD_LIMIT, ctx.max_limit), 1, ctx.max_limit)
    q = RoadQuery(
        bbox=parse_bbox(bbox),
        since_ms=since_ms,
        until_ms=until_ms,
        type=type,
        min_exposure=int_param("min_exposure", min_exposure, 1, 0, 2**31 - 1),
        limit=size + 1,
        cursor=cursor,
        min_vehicles=privacy.k if caller.role is Role.CITY else 0,
    )
    cells = await ctx.queries.road_conditions(q)
    page, more = cells[:size], len(cells) > size
    caller.rows = len(page)
    features = [geojson.road_feature_json(c) for c in page]
    body: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    headers: dict[str, str] = {}
    body["next_cursor"] = None
    body["links"] = []
    if more:
        body["next_cursor"] = next_cursor = cell_cursor(page[-1])
        href = str(request.url.include_query_params(cursor=next_cursor))
        body["links"] = [{"rel": "next", "href": href, "type": GEOJSON}]
        headers["Link"] = f'<{href}>; rel="next"'
    return geo_fast(body, headers)
