"""``/v1/signs``: traffic sign clusters as GeoJSON points."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from cloud_collector import geojson
from cloud_collector.auth import CallerDep
from cloud_collector.routes.context import Ctx
from cloud_collector.routes.params import BBOX_DOC, geo, parse_bbox

router = APIRouter()


@router.get("/v1/signs", summary="Traffic sign clusters as GeoJSON points")
async def signs(
    ctx: Ctx,
    caller: CallerDep,
    bbox: Annotated[str | None, Query(description=BBOX_DOC)] = None,
) -> JSONResponse:
    clusters = await ctx.queries.signs(parse_bbox(bbox))
    caller.rows = len(clusters)
    return geo(geojson.signs_collection(clusters))
