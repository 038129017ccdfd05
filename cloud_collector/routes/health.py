"""``/v1/vehicles/{id}/health``: one vehicle's health snapshots as a time series."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import JSONResponse

from cloud_collector import geojson
from cloud_collector.auth import CallerDep
from cloud_collector.routes.context import Ctx
from cloud_collector.routes.params import TIME_DOC, bad, check_id, int_param, span
from cloud_collector.store.base import (
    DEFAULT_HEALTH_LIMIT,
    DEFAULT_HEALTH_POINTS,
    MAX_HEALTH_POINTS,
    HealthQuery,
)

router = APIRouter()


@router.get(
    "/v1/vehicles/{vehicle_id}/health",
    summary="One vehicle's health snapshots as a time series, oldest first",
)
async def vehicle_health(
    ctx: Ctx,
    caller: CallerDep,
    vehicle_id: Annotated[str, Path(description="vehicle id")],
    since: Annotated[str | None, Query(description=TIME_DOC + "; inclusive")] = None,
    until: Annotated[str | None, Query(description=TIME_DOC + "; exclusive")] = None,
    limit: Annotated[
        str | None,
        Query(description="the latest N snapshots of the window as stored, 1 to the maximum"),
    ] = None,
    points: Annotated[
        str | None,
        Query(
            description="at most N points over the window (the default, 600, without limit):"
            " per equal time bucket its last snapshot, count, and min and max of each"
            f" numeric value; 1 to {MAX_HEALTH_POINTS} (or the maximum page size)"
        ),
    ] = None,
) -> JSONResponse:
    check_id("vehicle_id", vehicle_id)
    since_ms, until_ms = span(since, until)
    q = HealthQuery(vehicle=vehicle_id, since_ms=since_ms, until_ms=until_ms)
    if limit is not None and points is not None:
        raise bad("points", "give either points or limit, not both")
    if limit is not None:
        n = int_param("limit", limit, DEFAULT_HEALTH_LIMIT, 1, ctx.max_limit)
        q = replace(q, limit=n)
    else:
        top = min(MAX_HEALTH_POINTS, ctx.max_limit)
        q = replace(q, points=int_param("points", points, min(DEFAULT_HEALTH_POINTS, top), 1, top))
    if await ctx.queries.vehicle(vehicle_id, caller.fleets) is None:
        raise HTTPException(status_code=404, detail="vehicle_id: unknown vehicle")
    found = await ctx.queries.health_history(q)
    caller.rows = len(found)
    return JSONResponse([geojson.health_point_json(p) for p in found])
