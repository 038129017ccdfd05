"""What the routers share: the store's query side and the app's settings, one per app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from cloud_collector import alerts as al
from cloud_collector.config import AlertsConfig
from cloud_collector.metrics import IngestMetrics
from cloud_collector.readiness import Readiness
from cloud_collector.store.base import Queries, VehicleHealth
from cloud_collector.tile_cache import TileCache

Evaluated = tuple[VehicleHealth, al.Derived, list[al.Alert]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiContext:
    """``readiness`` is what /readyz answers (store and MQTT); ``thresholds`` are the
    alert thresholds, ``clock_ms`` the wall clock they are evaluated against;
    ``max_limit`` caps every page size."""

    queries: Queries
    counters: IngestMetrics
    readiness: Readiness
    max_limit: int
    thresholds: AlertsConfig
    clock_ms: Callable[[], int]
    # Encoded vector tiles (routes/tiles.py), one per app.
    tile_cache: TileCache = field(default_factory=TileCache)

    def evaluated(self, states: list[VehicleHealth]) -> list[Evaluated]:
        """Each state with what is derived from it and its active alerts, now."""
        now_ms = self.clock_ms()
        return [
            (
                h,
                al.derive(h, now_ms, self.thresholds),
                al.evaluate_alerts(h, h.latest_health, now_ms, self.thresholds),
            )
            for h in states
        ]


async def api_context(request: Request) -> ApiContext:
    """The context ``create_app`` put on the app (a FastAPI dependency)."""
    ctx = request.app.state.api
    if not isinstance(ctx, ApiContext):
        raise TypeError("the app has no ApiContext: build it with create_app")
    return ctx


Ctx = Annotated[ApiContext, Depends(api_context)]
