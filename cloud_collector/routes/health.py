"""``/v1/vehicles/{id}/health``: one vehicle's health snapshots as a time series."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import JSONResponse

from cloud_collector import geojson
from cloud_collector.auth import CallerDep
from cloud_collector.routes.context import Ctx
from cloud_collector.routes.params import TIME_DOC, check_id, int_param, span
from cloud_collector.store.base import DEFAULT_HEALTH_LIMIT, HealthQuery

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
        Query(description="the latest N snapshots of the window, 1 to the maximum"),
    ] = None,
) -> JSONResponse:
    check_id("vehicle_id", vehicle_id)
    since_ms, until_ms = span(since, until)
    n = int_param("limit", limit, min(DEFAULT_HEALTH_LIMIT, ctx.max_limit), 1, ctx.max_limit)
    if await ctx.queries.vehicle(vehicle_id, caller.fleets) is None:
        raise HTTPException(status_code=404, detail="vehicle_id: unknown vehicle")
    points = await ctx.queries.health_history(
        HealthQuery(vehicle=vehicle_id, since_ms=since_ms, until_ms=until_ms, limit=n)
    )
    caller.rows = len(points)
    return JSONResponse([geojson.health_point_json(p) for p in points])
