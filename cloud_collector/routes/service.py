"""The service's own endpoints: ``/healthz`` (alive), ``/readyz`` (store reachable and
MQTT connected, as the process's ``readiness.Readiness`` last saw it) and ``/metrics``
(Prometheus text). On the API's port the probes are answered before routing
(``admission.FrontDoor``, the same answers); these handlers serve the metrics listener
and document them in the OpenAPI description."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from cloud_collector.errors import StoreError
from cloud_collector.http_guard import Guard
from cloud_collector.metrics import CONTENT_TYPE, FleetFigures, render
from cloud_collector.routes.context import Ctx

router = APIRouter()


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Store reachable and MQTT connected")
async def readyz(ctx: Ctx) -> JSONResponse:
    problems = await ctx.readiness.problems()
    if problems:
        return JSONResponse({"status": "not ready", "problems": problems}, 503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics", summary="Prometheus text exposition", response_class=PlainTextResponse)
async def metrics_text(ctx: Ctx, request: Request) -> Response:
    # Ingest counters always, the store's figures when it answers: a scrape must not fail
    # with the database.
    try:
        store_figures: dict[str, int | float] = await ctx.queries.metrics()
    except StoreError:
        store_figures = {}
    fleet: FleetFigures | None = None
    try:
        rows = ctx.evaluated(await ctx.queries.vehicle_health())
    except StoreError:
        rows = []
    else:
        fleet = FleetFigures.of([(h.status.vehicle, d, a) for h, d, a in rows])
    guard = getattr(request.app.state, "guard", None)
    http = guard.figures() if isinstance(guard, Guard) else None
    return Response(render(ctx.counters, store_figures, fleet, http), media_type=CONTENT_TYPE)
