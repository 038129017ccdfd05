"""OGC API - Features, Part 1: Core, in GeoJSON, under ``/ogc`` (``/`` is the dashboard).

``/ogc`` (landing page), ``/ogc/conformance``, ``/ogc/collections``,
``/ogc/collections/{collectionId}``, ``.../items`` and ``.../items/{featureId}``, for the
collections ``events`` (located events, without vehicle ids), ``road-conditions`` (one
feature per H3 cell and hour, its hexagon as the geometry) and ``signs`` (the sign
inventory). Items page by a keyset cursor in their ``next`` link; ``numberMatched`` is
given on a first page when at most ``COUNT_CAP`` features match (beyond that counting
costs as much as reading them, and Part 1 lets it be left out). Bad parameters are a 400
in the OGC exception JSON (``ogc_params``), never a 5xx.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Final

import h3
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from cloud_collector import geojson
from cloud_collector.auth import CityView, CityViewDep
from cloud_collector.errors import QueryError
from cloud_collector.privacy import city_event_feature, city_ids, day_number, on_cells_in
from cloud_collector.routes import ogc_params as op
from cloud_collector.routes.context import ApiContext, Ctx
from cloud_collector.routes.params import GEOJSON, geo_fast
from cloud_collector.store.base import (
    COLLECTION_IDS,
    DEFAULT_EVENT_LIMIT,
    EVENTS_COLLECTION,
    MAX_EVENT_LIMIT,
    ROAD_COLLECTION,
    SIGNS_COLLECTION,
    EventQuery,
    Extent,
    FeatureQuery,
    StoredEvent,
)
from cloud_collector.store.reads import decode_cursor, encode_cursor

PREFIX: Final = "/ogc"
# numberMatched up to this many (counting 10^5 rows cost a city-sized first page 200 ms).
COUNT_CAP: Final = 10_000
# Extents are computed from the whole store (a scan of the cell-hours); they move slowly,
# so the app keeps them this long (in its state).
EXTENTS_TTL_S: Final = 60.0
WORLD: Final = (-180.0, -90.0, 180.0, 90.0)
CONFORMANCE: Final = (
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
)
TITLES: Final = {
    EVENTS_COLLECTION: ("ADAS events", "Located camera and vehicle events, oldest first"),
    ROAD_COLLECTION: (
        "Road conditions",
        "Per H3 resolution-10 cell and hour: event counts by type, passes, hotspot rate,"
        " mean speed and condition shares",
    ),
    SIGNS_COLLECTION: ("Traffic signs", "Sign clusters seen by the fleet"),
}
_H3_HEX: Final = re.compile(r"[0-9a-f]{15}")
_DIGITS: Final = re.compile(r"[0-9]{1,18}")
_ITEM_PARAMS: Final = frozenset({"bbox", "datetime", "limit", "cursor", "f"})


class OgcRoute(APIRoute):
    """Answers ``OgcError``, a 400 or 404 from a shared parser and a query the store
    rejects in the OGC exception JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except op.OgcError as exc:
                return _exception(exc.status, exc.code, exc.description)
            except RequestValidationError as exc:  # a declared type or bound (limit)
                return _exception(400, op.BAD_PARAMETER, op.validation_reason(exc))
            except QueryError as exc:
                return _exception(400, op.BAD_PARAMETER, str(exc) or "invalid query")
            except HTTPException as exc:
                if exc.status_code not in (400, 404):
                    raise
                code = op.NOT_FOUND if exc.status_code == 404 else op.BAD_PARAMETER
                return _exception(exc.status_code, code, str(exc.detail))

        return answer


def _exception(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse(op.exception_body(code, description), status)


router = APIRouter(route_class=OgcRoute, tags=["OGC API - Features"])
F = Annotated[str | None, Query(description=op.F_DOC)]


@router.get(PREFIX, summary="OGC API - Features landing page")
async def landing(request: Request, f: F = None) -> JSONResponse:
    op.check_f(f)
    return JSONResponse(
        {
            "title": "Taxi ADAS road-condition store",
            "description": "Events, road conditions and signs as OGC API - Features (GeoJSON)",
            "links": [
                op.link(op.url(request, PREFIX), "self", op.JSON_TYPE, "this document"),
                op.link(op.url(request, "/openapi.json"), "service-desc", op.OPENAPI_TYPE),
                op.link(op.url(request, "/docs"), "service-doc", "text/html"),
                op.link(op.url(request, f"{PREFIX}/conformance"), "conformance", op.JSON_TYPE),
                op.link(op.url(request, f"{PREFIX}/collections"), "data", op.JSON_TYPE),
            ],
        }
    )


@router.get(f"{PREFIX}/conformance", summary="The conformance classes served")
async def conformance(request: Request, f: F = None) -> JSONResponse:
    op.check_f(f)
    self_link = op.link(op.url(request, f"{PREFIX}/conformance"), "self", op.JSON_TYPE)
    return JSONResponse({"conformsTo": list(CONFORMANCE), "links": [self_link]})


def _extent_json(extent: Extent) -> dict[str, Any]:
    first = None if extent.first_ms is None else geojson.iso_ms(extent.first_ms)
    last = None if extent.last_ms is None else geojson.iso_ms(extent.last_ms)
    return {
        "spatial": {"bbox": [list(extent.bbox or WORLD)], "crs": op.CRS84},
        "temporal": {"interval": [[first, last]], "trs": op.GREGORIAN},
    }


def _collection_json(request: Request, cid: str, extent: Extent) -> dict[str, Any]:
    title, description = TITLES[cid]
    here = f"{PREFIX}/collections/{cid}"
    return {
        "id": cid,
        "title": title,
        "description": description,
        "itemType": "feature",
        "crs": [op.CRS84],
        "extent": _extent_json(extent),
        "links": [
            op.link(op.url(request, here), "self", op.JSON_TYPE, title),
            op.link(op.url(request, f"{here}/items"), "items", GEOJSON, title),
        ],
    }


async def _extents_of(ctx: ApiContext, request: Request) -> dict[str, Extent]:
    """The store's extents, at most ``EXTENTS_TTL_S`` old."""
    now = time.monotonic()
    cached: tuple[float, dict[str, Extent]] | None = getattr(request.app.state, "ogc_extents", None)
    if cached is not None and now - cached[0] < EXTENTS_TTL_S:
        return cached[1]
    extents = await ctx.queries.extents()
    request.app.state.ogc_extents = (now, extents)
    return extents


def _collection_id(collection_id: str) -> str:
    if collection_id not in COLLECTION_IDS:
        raise op.OgcError(404, op.NOT_FOUND, f"collectionId: no collection {collection_id!r}")
    return collection_id


# The ids are listed in the OpenAPI document (clients and the fuzz pick real ones); an
# unknown one is this API's 404, not a validation error.
CollectionId = Annotated[
    str,
    Path(
        description="one of: " + ", ".join(COLLECTION_IDS),
        json_schema_extra={"enum": list(COLLECTION_IDS)},
    ),
]


@router.get(f"{PREFIX}/collections", summary="The feature collections")
async def collections(ctx: Ctx, request: Request, f: F = None) -> JSONResponse:
    op.check_f(f)
    extents = await _extents_of(ctx, request)
    return JSONResponse(
        {
            "collections": [_collection_json(request, c, extents[c]) for c in COLLECTION_IDS],
            "links": [
                op.link(op.url(request, f"{PREFIX}/collections"), "self", op.JSON_TYPE),
            ],
        }
    )


@router.get(f"{PREFIX}/collections/{{collection_id}}", summary="One feature collection")
async def collection(
    ctx: Ctx, request: Request, collection_id: CollectionId, f: F = None
) -> JSONResponse:
    op.check_f(f)
    cid = _collection_id(collection_id)
    extents = await _extents_of(ctx, request)
    return JSONResponse(_collection_json(request, cid, extents[cid]))


async def _page(
    ctx: ApiContext, cid: str, q: FeatureQuery, view: CityView, *, text: bool = True
) -> tuple[list[Any], tuple[int, int] | None]:
    """One page of features (cell-hours as JSON text with ``text``: ``geo_fast`` embeds
    it) and the key after it (None: the last page). The city's view
    (``view.k`` > 0): k-anonymous cell-hours only, events on their cell's centre (the
    bbox tested there), with the day's pseudonym."""
    if cid == EVENTS_COLLECTION:
        page = await ctx.queries.events(
            EventQuery(
                since_ms=q.since_ms, until_ms=q.until_ms,
                bbox=WORLD if view.k else q.bbox or WORLD, limit=q.limit,
                cursor=None if q.after is None else encode_cursor(*q.after),
                min_vehicles=view.k,
            )
        )  # fmt: skip
        after = None if page.next_cursor is None else decode_cursor(page.next_cursor)
        if not view.k:
            return [op.city_event_feature(e) for e in page.events], after
        key = await view.privacy.key()
        found = on_cells_in(page.events, q.bbox or WORLD)
        return [city_event_feature(e, key) for e in found], after
    if cid == ROAD_COLLECTION:
        cells = await ctx.queries.cell_page(q)
        encode = geojson.road_feature_json if text else geojson.road_feature
        return [encode(c) for c in cells.cells], cells.next_after
    signs = await ctx.queries.sign_page(q)
    return [geojson.sign_feature(s) for s in signs.signs], signs.next_after


async def _find_event(ctx: ApiContext, feature_id: str, view: CityView) -> dict[str, Any] | None:
    """The events feature ``feature_id`` names for ``view`` (the city's ids are
    ``privacy.CityIds``'), None if there is none it may see."""
    if view.k:
        found = city_ids(await view.privacy.key()).event_of(feature_id)
        if found is None:
            return None
        day, event_id = found
    else:
        day, event_id = None, _key(EVENTS_COLLECTION, feature_id)[1]
    evidence = await ctx.queries.event_evidence(event_id)
    if evidence is None or evidence.event.lat is None:
        return None
    if day is not None and day_number(evidence.event.time_ms) != day:
        return None
    return await _event_item(ctx, evidence.event, view)


async def _event_item(ctx: ApiContext, e: StoredEvent, view: CityView) -> dict[str, Any] | None:
    """``e`` as a feature for ``view``; None when the city may not see it (its cell-hour
    is not k-anonymous): the city's events page of its millisecond decides."""
    if not view.k:
        return op.city_event_feature(e)
    q = FeatureQuery(since_ms=e.time_ms, until_ms=e.time_ms + 1, limit=MAX_EVENT_LIMIT)
    features, _ = await _page(ctx, EVENTS_COLLECTION, q, view)
    wanted = city_ids(await view.privacy.key()).event_id(e.id, e.time_ms)
    return next((f for f in features if f["id"] == wanted), None)


async def _cursor_codec(view: CityView, cid: str) -> Callable[[tuple[int, int]], str]:
    """How ``view`` gets a page's key as a cursor: the city's events cursors are sealed
    (``privacy.CityIds``: no store id in them)."""
    if not (view.k and cid == EVENTS_COLLECTION):
        return lambda after: encode_cursor(*after)
    ids = city_ids(await view.privacy.key())
    return lambda after: ids.seal(encode_cursor(*after))


def _item_links(
    request: Request,
    cid: str,
    after: tuple[int, int] | None,
    encode: Callable[[tuple[int, int]], str],
) -> list[Any]:
    links = [
        op.link(str(request.url), "self", GEOJSON, "this page"),
        op.link(op.url(request, f"{PREFIX}/collections/{cid}"), "collection", op.JSON_TYPE),
    ]
    if after is not None:
        params = {k: v for k, v in request.query_params.items() if k != "cursor"}
        params["cursor"] = encode(after)
        path = f"{PREFIX}/collections/{cid}/items"
        links.append(op.link(op.url(request, path, params), "next", GEOJSON, "next page"))
    return links


@router.get(
    f"{PREFIX}/collections/{{collection_id}}/items",
    summary="A page of a collection's features (GeoJSON)",
)
async def items(  # noqa: PLR0913, PLR0917 - one parameter per query parameter
    ctx: Ctx,
    request: Request,
    view: CityViewDep,
    collection_id: CollectionId,
    bbox: Annotated[str | None, Query(description=op.BBOX_DOC)] = None,
    datetime: Annotated[str | None, Query(description=op.DATETIME_DOC)] = None,
    limit: op.Limit = DEFAULT_EVENT_LIMIT,
    cursor: Annotated[str | None, Query(description=op.CURSOR_DOC)] = None,
    f: F = None,
) -> Response:
    cid = _collection_id(collection_id)
    op.check_known(request, _ITEM_PARAMS)
    op.check_f(f)
    op.check_cursor(cursor)
    since_ms, until_ms = op.parse_datetime(datetime)
    q = FeatureQuery(
        bbox=op.parse_bbox(bbox),
        since_ms=since_ms,
        until_ms=until_ms,
        limit=min(limit, ctx.max_limit),  # Part 1: above the maximum, the maximum
        after=None if cursor is None else await _after(cursor, view, cid),
        min_vehicles=view.k,
    )
    features, after = await _page(ctx, cid, q, view)
    body: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    # The city's events are filtered after the query (k-anonymity): no count of them.
    if cursor is None and not (view.k and cid == EVENTS_COLLECTION):
        matched = await ctx.queries.count_features(cid, q, COUNT_CAP)
        if matched is not None:
            body["numberMatched"] = matched
    body["numberReturned"] = len(features)
    body["timeStamp"] = geojson.iso_ms(ctx.clock_ms())
    body["links"] = _item_links(request, cid, after, await _cursor_codec(view, cid))
    return geo_fast(body)


async def _after(cursor: str, view: CityView, cid: str) -> tuple[int, int]:
    if view.k and cid == EVENTS_COLLECTION:
        cursor = city_ids(await view.privacy.key()).unseal(cursor)
    major, minor = decode_cursor(cursor)
    if not (-(2**63) <= major < 2**63 and -(2**63) <= minor < 2**63):
        raise op.bad("cursor", "not a cursor of this API")
    return major, minor


def _key(cid: str, feature_id: str) -> tuple[int, int]:
    """The store key of ``feature_id`` (an event or sign id, or ``<h3 cell>@<hour ms>``)."""
    nope = op.OgcError(404, op.NOT_FOUND, f"featureId: no feature {feature_id!r} in {cid}")
    if cid == ROAD_COLLECTION:
        cell, _, hour = feature_id.partition("@")
        hex_ok = _H3_HEX.fullmatch(cell) is not None
        if not (hex_ok and h3.is_valid_cell(cell) and _DIGITS.fullmatch(hour)):
            raise nope
        return int(hour), int(h3.str_to_int(cell))
    if not _DIGITS.fullmatch(feature_id):
        raise nope
    return 0, int(feature_id)


@router.get(
    f"{PREFIX}/collections/{{collection_id}}/items/{{feature_id}}",
    summary="One feature (GeoJSON)",
)
async def item(
    ctx: Ctx,
    request: Request,
    collection_id: CollectionId,
    feature_id: Annotated[str, Path(description="the feature's id")],
    view: CityViewDep,
    f: F = None,
) -> JSONResponse:
    cid = _collection_id(collection_id)
    op.check_f(f)
    found: dict[str, Any] | None = None
    if cid == EVENTS_COLLECTION:
        found = await _find_event(ctx, feature_id, view)
    else:
        major, minor = _key(cid, feature_id)
        one = FeatureQuery(limit=1, after=(major, minor - 1), min_vehicles=view.k)
        features, _ = await _page(ctx, cid, one, view, text=False)
        found = next((x for x in features if str(x["id"]) == feature_id), None)
    if found is None:
        raise op.OgcError(404, op.NOT_FOUND, f"featureId: no feature {feature_id!r} in {cid}")
    here = f"{PREFIX}/collections/{cid}"
    found["links"] = [
        op.link(str(request.url), "self", GEOJSON),
        op.link(op.url(request, here), "collection", op.JSON_TYPE),
    ]
    return JSONResponse(found, media_type=GEOJSON)
