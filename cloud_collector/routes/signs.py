"""``/v1/signs``: traffic sign clusters as GeoJSON points."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from cloud_collector import geojson
from cloud_collector.routes.context import Ctx
from cloud_collector.routes.params import BBOX_DOC, geo, parse_bbox

router = APIRouter()


@router.get("/v1/signs", summary="Traffic sign clusters as GeoJSON points")
async def signs(
    ctx: Ctx,
    bbox: Annotated[str | None, Query(description=BBOX_DOC)] = None,
) -> JSONResponse:
    return geo(geojson.signs_collection(await ctx.queries.signs(parse_bbox(bbox))))
