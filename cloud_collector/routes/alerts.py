"""``/v1/alerts``: the vehicle health alerts active now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from cloud_collector import alerts as al
from cloud_collector import geojson
from cloud_collector.auth import CallerDep
from cloud_collector.routes.context import Ctx
from cloud_collector.routes.params import bad, check_id

router = APIRouter()


@router.get("/v1/alerts", summary="Active vehicle health alerts")
async def alerts(
    ctx: Ctx,
    caller: CallerDep,
    vehicle: Annotated[str | None, Query(description="vehicle id")] = None,
    kind: Annotated[str | None, Query(description="one of: " + ", ".join(al.KINDS))] = None,
) -> JSONResponse:
    check_id("vehicle", vehicle)
    if kind is not None and kind not in al.KINDS:
        raise bad("kind", "one of " + ", ".join(al.KINDS))
    rows = ctx.evaluated(await ctx.queries.vehicle_health(vehicle, caller.fleets))
    body = [geojson.alert_json(a) for _, _, found in rows for a in found]
    body = [a for a in body if kind is None or a["kind"] == kind]
    caller.rows = len(body)
    return JSONResponse(body)
