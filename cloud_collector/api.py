"""The HTTP API for a city's traffic backend (FastAPI; OpenAPI at /openapi.json).

``create_app`` only wires: the endpoints live in one router per resource under
``cloud_collector.routes``, and read the store's query side (``store.base.Queries``)
through the app's ``routes.context.ApiContext``. Bad parameters are a 400 naming the
parameter, store failures that are nobody's input error (database down) a 503
(``routes.errors``).
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, FastAPI

from cloud_collector.config import AlertsConfig, DashboardConfig, HttpConfig
from cloud_collector.dashboard import mount_dashboard
from cloud_collector.http_guard import Guard, GuardMiddleware, admitted
from cloud_collector.metrics import IngestMetrics
from cloud_collector.routes import (
    alerts,
    events,
    health,
    ogc,
    road_conditions,
    service,
    signs,
    tiles,
    vehicles,
)
from cloud_collector.routes.context import ApiContext
from cloud_collector.routes.errors import install_error_handlers
from cloud_collector.store.base import MAX_EVENT_LIMIT, Queries
from daemon_kit.clock import wall_ms

# In OpenAPI order; the dashboard comes last (see ``mount_dashboard``).
ROUTERS = (
    events.router,
    road_conditions.router,
    signs.router,
    vehicles.router,
    health.router,
    alerts.router,
    service.router,
    ogc.router,
    tiles.router,
)


def create_app(
    store: Queries,
    metrics: IngestMetrics | None = None,
    *,
    mqtt_ready: Callable[[], bool] = lambda: True,
    max_limit: int = MAX_EVENT_LIMIT,
    thresholds: AlertsConfig | None = None,
    clock_ms: Callable[[], int] = wall_ms,
    dashboard: DashboardConfig | None = None,
    http: HttpConfig | None = None,
) -> FastAPI:
    """The app over the query side ``store`` (a whole ``Store`` will do); ``mqtt_ready``
    tells /readyz whether ingest is connected; ``thresholds`` are the alert thresholds,
    ``clock_ms`` the wall clock they are evaluated against; ``http`` the limits and
    headers of ``http_guard`` (omitted: the embedded defaults); ``dashboard`` the map's
    settings."""
    app = FastAPI(
        title="Taxi ADAS cloud collector",
        version="1",
        description="Events, road conditions, signs and vehicle uplink health as GeoJSON.",
    )
    app.state.api = ApiContext(
        queries=store,
        counters=metrics if metrics is not None else IngestMetrics(),
        mqtt_ready=mqtt_ready,
        max_limit=min(max_limit, MAX_EVENT_LIMIT),
        thresholds=thresholds if thresholds is not None else AlertsConfig(),
        clock_ms=clock_ms,
    )
    install_error_handlers(app)
    http = http if http is not None else HttpConfig()
    app.state.guard = Guard(http)
    for router in ROUTERS:
        app.include_router(router, dependencies=[Depends(admitted)])
    dashboard = dashboard if dashboard is not None else DashboardConfig()
    mount_dashboard(app, dashboard)  # GET /: the operator dashboard
    app.add_middleware(GuardMiddleware, config=http, extra_origin=dashboard.basemap_origin())
    return app


def metrics_app(app: FastAPI) -> FastAPI:
    """An app serving only ``app``'s /metrics (``[http] metrics_listen``): for a scraper
    on a loopback listener of its own, beside the main port's."""
    only = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    only.state.api = app.state.api
    only.state.guard = app.state.guard  # its figures, not its limits
    only.add_api_route("/metrics", service.metrics_text, methods=["GET"])
    return only
