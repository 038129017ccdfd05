"""``/v1/vehicles`` and ``/v1/vehicles/{id}``: uplink health and alerts per vehicle."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import JSONResponse

from cloud_collector import geojson
from cloud_collector.auth import CallerDep
from cloud_collector.routes.context import Ctx
from cloud_collector.routes.params import check_id

router = APIRouter()


@router.get("/v1/vehicles", summary="Every known vehicle's uplink health and alerts")
async def vehicles(ctx: Ctx, caller: CallerDep) -> JSONResponse:
    rows = ctx.evaluated(await ctx.queries.vehicle_health(None, caller.fleets))
    caller.rows = len(rows)
    return JSONResponse(
        {"vehicles": [geojson.vehicle_health_json(h.status, d, a) for h, d, a in rows]}
    )


@router.get("/v1/vehicles/{vehicle_id}", summary="One vehicle's uplink health and alerts")
async def vehicle(
    ctx: Ctx,
    caller: CallerDep,
    vehicle_id: Annotated[str, Path(description="vehicle id")],
) -> JSONResponse:
    check_id("vehicle_id", vehicle_id)
    rows = ctx.evaluated(await ctx.queries.vehicle_health(vehicle_id, caller.fleets))
    caller.rows = len(rows)
    if not rows:
        raise HTTPException(status_code=404, detail="vehicle_id: unknown vehicle")
    h, d, a = rows[0]
    return JSONResponse(geojson.vehicle_health_json(h.status, d, a))
