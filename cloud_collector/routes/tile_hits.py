"""Cached vector tiles answered before routing (``TileHits``, plain ASGI, between the
authenticating middleware and FastAPI's router).

A cached tile's bytes are ready; what a hit cost was the framework around them: matching
the path against every route, resolving the tile route's dependencies (seven, one a
generator), FastAPI's request and exception handling. Here a GET of
``/tiles/{layer}/{z}/{x}/{y}.mvt`` is parsed and validated by the route's own functions
(``routes/tiles.py``), keyed by them under the caller's view, and a cache hit is answered
with the route's own response (ETag, 304, Cache-Control) and audit entry (the route's
template); the client's limits were applied before, by ``admission.ClientAdmission``.
Anything else (a miss, a parameter the route refuses, another method or path) goes on to
the route unchanged: tiles are made, and errors worded, in one place.
"""

from __future__ import annotations

from typing import Final

from fastapi import HTTPException
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from cloud_collector import tiles
from cloud_collector.auth import Caller, view_k
from cloud_collector.privacy import Privacy
from cloud_collector.routes import tiles as tile_route
from cloud_collector.routes.context import ApiContext
from cloud_collector.routes.params import check_name
from cloud_collector.tile_cache import CachedTile

_SUFFIX: Final = ".mvt"
# The tile route, put in the scope as routing would (the audit entry names its template).
_TILE_ROUTE: Final = next(
    r for r in tile_route.router.routes if getattr(r, "path", None) == tile_route.TILE_PATH
)


class TileHits:
    """Answers a cached tile's request without routing (see the module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            found = _cached(scope)
            if found is not None:
                await self._answer(scope, receive, send, found)
                return
        await self.app(scope, receive, send)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, found: tuple[CachedTile, bool]
    ) -> None:
        """Send the cached tile (the client's limits were applied outside, by
        ``admission.ClientAdmission``)."""
        request = Request(scope, receive)
        scope["route"] = _TILE_ROUTE
        tile, settled = found
        response = tile_route.tile_response(tile, settled, request.headers.get("if-none-match"))
        await response(scope, receive, send)


def _cached(scope: Scope) -> tuple[CachedTile, bool] | None:
    """The cached tile a tile request asks for, and whether its period is settled; None
    when it is not a tile request, not valid, or not cached (the route takes over)."""
    parts = scope["path"].split("/")
    if len(parts) != 6 or parts[1] != "tiles" or not parts[5].endswith(_SUFFIX):
        return None
    app = scope["app"]
    ctx, privacy = getattr(app.state, "api", None), getattr(app.state, "privacy", None)
    caller = scope.get("state", {}).get("caller")
    layer = parts[2]
    if not (
        isinstance(ctx, ApiContext)
        and isinstance(privacy, Privacy)
        and isinstance(caller, Caller)
        and layer in tiles.LAYERS
    ):
        return None
    query = QueryParams(scope["query_string"])
    since, until, type = query.get("since"), query.get("until"), query.get("type")
    try:
        t = tile_route.parse_tile(parts[3], parts[4], parts[5][: -len(_SUFFIX)])
        check_name("type", type)
        now_ms = ctx.clock_ms()
        when = tile_route.period(since, until, now_ms)
    except HTTPException:
        return None
    settled = when[1] <= now_ms - tile_route.SETTLED_MS
    key, _ = tile_route.tile_key(layer, t, when, type, view_k(caller, privacy), settled)
    found = ctx.tile_cache.get(key, now_ms, count_miss=False)
    return None if found is None else (found, settled)
