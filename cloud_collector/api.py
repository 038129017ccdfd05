"""The HTTP API for a city's traffic backend (FastAPI; OpenAPI at /openapi.json).

``create_app`` only wires: the endpoints live in one router per resource under
``cloud_collector.routes``, and read the store's query side (``store.base.Queries``)
through the app's ``routes.context.ApiContext``. Bad parameters are a 400 naming the
parameter, store failures that are nobody's input error (database down) a 503
(``routes.errors``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from cloud_collector.admission import ClientAdmission, FrontDoor
from cloud_collector.audit import AuditTrail
from cloud_collector.auth import Authenticator, TokenCache, install_auth
from cloud_collector.config import AlertsConfig, AuthConfig, DashboardConfig, HttpConfig
from cloud_collector.dashboard import mount_dashboard
from cloud_collector.http_guard import Guard, GuardMiddleware, response_headers
from cloud_collector.metrics import IngestMetrics
from cloud_collector.privacy import Privacy
from cloud_collector.readiness import Readiness
from cloud_collector.routes import (
    alerts,
    audit,
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
from cloud_collector.routes.tile_hits import TileHits
from cloud_collector.store.access import PSEUDONYM_SECRET, Access
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
    audit.router,
)


def create_app(  # noqa: PLR0913 - wiring: one keyword per part the app is built from
    store: Queries,
    metrics: IngestMetrics | None = None,
    *,
    mqtt_ready: Callable[[], bool] = lambda: True,
    max_limit: int = MAX_EVENT_LIMIT,
    thresholds: AlertsConfig | None = None,
    clock_ms: Callable[[], int] = wall_ms,
    dashboard: DashboardConfig | None = None,
    http: HttpConfig | None = None,
    access: Access | None = None,
    auth: AuthConfig | None = None,
    audit_path: Path | bool | None = False,
) -> FastAPI:
    """The app over the query side ``store`` (a whole ``Store`` will do); ``mqtt_ready``
    tells /readyz whether ingest is connected; ``thresholds`` are the alert thresholds,
    ``clock_ms`` the wall clock they are evaluated against; ``dashboard`` the map's
    settings; ``http`` the limits and headers of ``http_guard`` (omitted: the embedded
    defaults). ``access`` holds the tokens and the audit log (default: the store's own
    ``access``); ``audit_path`` is the audit log's JSON-lines file (None: standard output,
    False: none)."""
    tokens = access if access is not None else getattr(store, "access", None)
    if tokens is None:
        raise TypeError("create_app needs the store's access side (tokens): pass access=")
    trail = AuditTrail(tokens, audit_path)
    app = FastAPI(
        title="Taxi ADAS cloud collector",
        version="1",
        description="Events, road conditions, signs and vehicle uplink health as GeoJSON.",
        lifespan=_closing(trail),
    )
    http = http if http is not None else HttpConfig()
    app.state.guard = guard = Guard(http)
    readiness = Readiness(store.ping, mqtt_ready)
    # Middleware added later runs earlier: after authentication ClientAdmission (the
    # client's limits), then TileHits (cached tiles answered before routing).
    app.add_middleware(TileHits)
    app.add_middleware(ClientAdmission, guard=guard)
    _install_access(app, tokens, auth if auth is not None else AuthConfig(), trail, clock_ms)
    app.state.api = ApiContext(
        queries=store,
        counters=metrics if metrics is not None else IngestMetrics(),
        readiness=readiness,
        max_limit=min(max_limit, MAX_EVENT_LIMIT),
        thresholds=thresholds if thresholds is not None else AlertsConfig(),
        clock_ms=clock_ms,
    )
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    dashboard = dashboard if dashboard is not None else DashboardConfig()
    mount_dashboard(app, dashboard)  # GET /: the operator dashboard
    origin = dashboard.basemap_origin()
    app.add_middleware(GuardMiddleware, config=http, extra_origin=origin)
    # Outermost (admission.py): probes, and the overall limit before anything is parsed.
    headers = response_headers(http, origin)
    app.add_middleware(FrontDoor, guard=guard, readiness=readiness, headers=headers)
    return app


def _closing(trail: AuditTrail) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the audit trail's last entries are written at shutdown."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await trail.close()

    return lifespan


def _install_access(
    app: FastAPI,
    tokens: Access,
    settings: AuthConfig,
    trail: AuditTrail,
    clock_ms: Callable[[], int],
) -> None:
    """Tokens, the city view's settings and the authenticating middleware on ``app``."""
    secret = settings.pseudonym_secret
    app.state.access = tokens
    app.state.privacy = Privacy(
        k=settings.k_anonymity,
        configured=None if secret is None else secret.get_secret_value().encode(),
        load=lambda: tokens.secret(PSEUDONYM_SECRET),
    )
    install_auth(app, Authenticator(TokenCache(tokens, settings.cache_s), trail, clock_ms))


def metrics_app(app: FastAPI) -> FastAPI:
    """An app serving only ``app``'s /metrics, /healthz and /readyz (``[http]
    metrics_listen``): for a scraper and probes on a loopback listener of their own,
    beside the main port's (served by the ingest process, whatever the API's load)."""
    only = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    only.state.api = app.state.api
    only.state.guard = app.state.guard  # its figures, not its limits
    only.add_api_route("/metrics", service.metrics_text, methods=["GET"])
    only.add_api_route("/healthz", service.healthz, methods=["GET"])
    only.add_api_route("/readyz", service.readyz, methods=["GET"])
    return only
