"""``/tiles/{layer}.json`` (TileJSON 3.0.0) and ``/tiles/{layer}/{z}/{x}/{y}.mvt``
(Mapbox Vector Tiles) for the layers ``road_conditions``, ``events`` and ``roads``.

A tile covers the period [since, until) (hours that start in it; events whose time lies
in it); without ``until`` it ends at the end of the current hour, without ``since`` it
starts 24 h before ``until``. ``roads`` (the streets the fleet drove) ignores the period.
A tile without features is an empty MVT (200, no bytes). Every tile has a strong ETag
(a hash of its bytes; ``If-None-Match`` gives a 304) and a Cache-Control by the age of
its period: ending over ``SETTLED_MS`` ago, a day; otherwise a minute. Encoded tiles are
kept in the app's ``TileCache`` (``cloud_collector/tile_cache.py``) under the caller's view.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Annotated, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from cloud_collector import tiles
from cloud_collector.auth import CityViewDep
from cloud_collector.geojson import iso_ms
from cloud_collector.privacy import city_time_ms
from cloud_collector.routes.context import Ctx
from cloud_collector.routes.params import TIME_DOC, bad, check_name, span
from cloud_collector.store.aggregate import DAY_MS, HOUR_MS
from cloud_collector.store.base import TileQuery
from cloud_collector.tile_cache import (
    RECENT_TTL_MS,
    ROADS_TTL_MS,
    SETTLED_TTL_MS,
    CachedTile,
    TileKey,
)

router = APIRouter()

MVT: Final = "application/vnd.mapbox-vector-tile"
# A period that ended this long ago gets no new rows (late batches aside): cache it long.
SETTLED_MS: Final = 2 * HOUR_MS
SETTLED_MAX_AGE_S: Final = 86_400
RECENT_MAX_AGE_S: Final = 60
WORLD: Final = (-180.0, -tiles.MERCATOR_MAX_LAT, 180.0, tiles.MERCATOR_MAX_LAT)
LAYER_DOC: Final = "road_conditions, events or roads"
TILE_PATH: Final = "/tiles/{layer}/{z}/{x}/{y}.mvt"
_DESCRIPTIONS: Final = {
    "road_conditions": "Road conditions per H3 cell summed over the period; cell resolution"
    " by zoom: " + ", ".join(f"z{z}: {r}" for z, r in enumerate(tiles.CELL_RES)),
    "events": f"Events as points, the latest {tiles.MAX_TILE_EVENTS} of the period per tile",
    "roads": "The streets the fleet drove (from its GNSS traces), as lines between H3 cell"
    " centres (resolution by zoom: one finer than road_conditions; 12 from zoom 14)",
}


@dataclass(frozen=True, slots=True)
class TileParams:
    since: str | None
    until: str | None
    type: str | None


async def tile_params(
    since: Annotated[str | None, Query(description=TIME_DOC + "; period start")] = None,
    until: Annotated[str | None, Query(description=TIME_DOC + "; period end")] = None,
    type: Annotated[str | None, Query(description="only events of this type")] = None,
) -> TileParams:
    """The query parameters of every tile layer (a FastAPI dependency)."""
    return TileParams(since, until, type)


Params = Annotated[TileParams, Depends(tile_params)]


def _layer(value: str) -> str:
    if value not in tiles.LAYERS:
        raise HTTPException(404, detail=f"layer: unknown layer {value!r} ({LAYER_DOC})")
    return value


def _coord(param: str, value: str) -> int:
    if not (value.isascii() and value.isdigit() and len(value) <= 6):
        raise bad(param, "not a non-negative integer")
    return int(value)


def parse_tile(z: str, x: str, y: str) -> tiles.Tile:
    zn, xn, yn = _coord("z", z), _coord("x", x), _coord("y", y)
    if zn > tiles.MAX_ZOOM:
        raise bad("z", f"beyond the maximum zoom {tiles.MAX_ZOOM}")
    side = 1 << zn
    if xn >= side:
        raise bad("x", f"must be within [0, {side - 1}] at zoom {zn}")
    if yn >= side:
        raise bad("y", f"must be within [0, {side - 1}] at zoom {zn}")
    return tiles.Tile(zn, xn, yn)


def period(since: str | None, until: str | None, now_ms: int) -> tuple[int, int]:
    since_ms, until_ms = span(since, until)
    if until_ms is None:
        until_ms = now_ms - now_ms % HOUR_MS + HOUR_MS
        if since_ms is not None and since_ms > until_ms:
            raise bad("since", "must not be after until (default: the end of this hour)")
    if since_ms is None:
        since_ms = max(until_ms - DAY_MS, 0)
    return since_ms, until_ms


async def _features(
    ctx: Ctx, layer: str, t: tiles.Tile, when: tuple[int, int], type: str | None, k: int
) -> list[tiles.Feature]:
    """The features of ``layer`` in tile ``t``; ``k`` > 0: the city's view (k-anonymous
    cell-hours, events on their cell's centre, road edges of at least k passes)."""
    bbox = tiles.tile_bbox(t)
    if layer == "road_conditions":
        res = tiles.cell_res(t.z)
        q = TileQuery(bbox=tiles.padded(bbox, res), res=res, since_ms=when[0],
                      until_ms=when[1], type=type, min_vehicles=k)  # fmt: skip
        label = f"{iso_ms(when[0])}/{iso_ms(when[1])}"
        return tiles.cell_features(t, await ctx.queries.tile_cells(q), res, label)
    if layer == "events":
        q = TileQuery(bbox=bbox, res=tiles.cell_res(t.z), since_ms=when[0], until_ms=when[1],
                      type=type, limit=tiles.MAX_TILE_EVENTS, min_vehicles=k)  # fmt: skip
        points = await ctx.queries.tile_events(q)
        if k:  # the city's view: times to the minute, like its events elsewhere
            points = [replace(p, time_ms=city_time_ms(p.time_ms)) for p in points]
        return tiles.event_features(t, points)
    res = tiles.road_res(t.z)
    q = TileQuery(bbox=tiles.road_bbox(t, res), res=res, since_ms=0, until_ms=0, min_vehicles=k)
    edges = await ctx.queries.tile_roads(q)
    return tiles.road_features(t, [e for e in edges if e.passes >= k], res)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    tags = {tag.strip() for tag in if_none_match.split(",")}
    return "*" in tags or etag in tags or f"W/{etag}" in tags


@router.get(
    TILE_PATH,
    summary="A Mapbox Vector Tile of one layer",
    response_class=Response,
    responses={
        200: {"content": {MVT: {}}, "description": "the tile (empty: no features)"},
        304: {"description": "unchanged (If-None-Match)"},
        400: {"description": "bad tile coordinates or parameters"},
        404: {"description": "unknown layer"},
    },
)
async def tile(
    ctx: Ctx,
    request: Request,
    layer: Annotated[str, Path(description=LAYER_DOC)],
    z: Annotated[str, Path(description=f"zoom, 0 to {tiles.MAX_ZOOM}")],
    x: Annotated[str, Path(description="column, 0 to 2^z - 1")],
    y: Annotated[str, Path(description="row from the north, 0 to 2^z - 1")],
    params: Params,
    view: CityViewDep,
) -> Response:
    since, until, type = params.since, params.until, params.type
    name = _layer(layer)
    t = parse_tile(z, x, y)
    check_name("type", type)
    now_ms = ctx.clock_ms()
    when = period(since, until, now_ms)
    settled = when[1] <= now_ms - SETTLED_MS
    key, ttl = tile_key(name, t, when, type, view.k, settled)
    found = ctx.tile_cache.get(key, now_ms)
    if found is None:
        body = tiles.encode(name, await _features(ctx, name, t, when, type, view.k))
        etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
        found = CachedTile(body, etag, now_ms + ttl)
        ctx.tile_cache.put(key, found)
    return tile_response(found, settled, request.headers.get("if-none-match"))


def tile_key(
    layer: str, t: tiles.Tile, when: tuple[int, int], type: str | None, k: int, settled: bool
) -> tuple[TileKey, int]:
    """The tile's key in the app's cache and how long it is kept there: a settled
    period's tile for a day, a recent one's for ``RECENT_TTL_MS``, the roads (no period)
    for ``ROADS_TTL_MS``."""
    if layer == "roads":
        return TileKey(layer, t.z, t.x, t.y, 0, 0, None, k), ROADS_TTL_MS
    ttl = SETTLED_TTL_MS if settled else RECENT_TTL_MS
    return TileKey(layer, t.z, t.x, t.y, when[0], when[1], type, k), ttl


def tile_response(found: CachedTile, settled: bool, if_none_match: str | None) -> Response:
    """The tile, or a 304 when ``If-None-Match`` names its ETag; Cache-Control by the
    period's age."""
    max_age = SETTLED_MAX_AGE_S if settled else RECENT_MAX_AGE_S
    headers = {"ETag": found.etag, "Cache-Control": f"private, max-age={max_age}"}
    if _matches(if_none_match, found.etag):
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=MVT, headers=headers)


@router.get("/tiles/{layer}.json", summary="TileJSON 3.0.0 of one tile layer")
async def tilejson(
    ctx: Ctx,
    request: Request,
    layer: Annotated[str, Path(description=LAYER_DOC)],
    params: Params,
) -> JSONResponse:
    since, until, type = params.since, params.until, params.type
    name = _layer(layer)
    check_name("type", type)
    span(since, until)
    given = {"since": since, "until": until, "type": type}
    query = urlencode({k: v for k, v in given.items() if v is not None})
    url = f"{request.base_url}tiles/{name}/{{z}}/{{x}}/{{y}}.mvt" + (f"?{query}" if query else "")
    found = await ctx.queries.extent()
    # The stored positions are fixes on the edges: a cell's width of margin.
    bounds = WORLD if found is None else tiles.padded(found, tiles.STORED_ROAD_RES, 4)
    centre = [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, 11]
    return JSONResponse(
        {
            "tilejson": "3.0.0",
            "name": name,
            "description": _DESCRIPTIONS[name],
            "scheme": "xyz",
            "tiles": [url],
            "minzoom": 0,
            "maxzoom": tiles.MAX_ZOOM,
            "bounds": list(bounds),
            "center": centre,
            "vector_layers": [
                {
                    "id": name,
                    "description": _DESCRIPTIONS[name],
                    "minzoom": 0,
                    "maxzoom": tiles.MAX_ZOOM,
                    "fields": tiles.FIELDS[name],
                }
            ],
        }
    )
