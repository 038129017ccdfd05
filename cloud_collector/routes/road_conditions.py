"""``/v1/road-conditions``: hourly aggregates per H3 cell, as GeoJSON polygons."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from cloud_collector import geojson
from cloud_collector.auth import CallerDep, PrivacyDep
from cloud_collector.roles import Role
from cloud_collector.routes.context import Ctx
from cloud_collector.routes.params import (
    BBOX_DOC,
    TIME_DOC,
    check_name,
    geo,
    int_param,
    parse_bbox,
    span,
)
from cloud_collector.store.base import RoadQuery

router = APIRouter()


@router.get("/v1/road-conditions", summary="Hourly aggregates per H3 cell, as polygons")
async def road_conditions(
    ctx: Ctx,
    caller: CallerDep,
    privacy: PrivacyDep,
    bbox: Annotated[str | None, Query(description=BBOX_DOC)] = None,
    since: Annotated[str | None, Query(description=TIME_DOC + "; hour start >=")] = None,
    until: Annotated[str | None, Query(description=TIME_DOC + "; hour start <")] = None,
    type: Annotated[str | None, Query(description="restrict counts to one type")] = None,
    min_exposure: Annotated[str | None, Query(description="minimum passes, >= 0")] = None,
) -> JSONResponse:
    check_name("type", type)
    since_ms, until_ms = span(since, until)
    q = RoadQuery(
        bbox=parse_bbox(bbox),
        since_ms=since_ms,
        until_ms=until_ms,
        type=type,
        min_exposure=int_param("min_exposure", min_exposure, 1, 0, 2**31 - 1),
        min_vehicles=privacy.k if caller.role is Role.CITY else 0,
    )
    cells = await ctx.queries.road_conditions(q)
    caller.rows = len(cells)
    return geo(geojson.road_collection(cells))
