"""The query side on a backend's runner: each method is one read-only ``reads`` (or
``health``) function in one transaction. Another query engine implements
``base.Queries`` on its own and leaves the ledger as it is."""

from __future__ import annotations

from cloud_collector.store import features, health, reads
from cloud_collector.store.base import (
    BBox,
    CellHour,
    CellPage,
    CellTotals,
    EventEvidence,
    EventPage,
    EventPoint,
    EventQuery,
    Extent,
    FeatureQuery,
    Fleets,
    HealthPoint,
    HealthQuery,
    RoadEdge,
    RoadQuery,
    SignCluster,
    SignPage,
    TileQuery,
    VehicleHealth,
    VehicleStatus,
)
from cloud_collector.store.shared import Runner


class EngineQueries:
    """``base.Queries`` over ``runner``."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def health_history(self, q: HealthQuery) -> list[HealthPoint]:
        return await self._runner.run(lambda tx: health.history(tx, q))

    async def vehicle_health(
        self, vehicle_id: str | None = None, fleets: Fleets = None
    ) -> list[VehicleHealth]:
        return await self._runner.run(
            lambda tx: health.vehicle_health(
                tx, vehicle_id, reads.STATUS_COLUMNS, reads.status_of, fleets
            )
        )

    async def events(self, q: EventQuery) -> EventPage:
        return await self._runner.run(lambda tx: reads.events(tx, q))

    async def event_evidence(self, event_id: int, fleets: Fleets = None) -> EventEvidence | None:
        return await self._runner.run(lambda tx: reads.event_evidence(tx, event_id, fleets))

    async def road_conditions(self, q: RoadQuery) -> list[CellHour]:
        return await self._runner.run(lambda tx: reads.road_conditions(tx, q))

    async def tile_cells(self, q: TileQuery) -> list[CellTotals]:
        return await self._runner.run(lambda tx: reads.tile_cells(tx, q))

    async def tile_events(self, q: TileQuery) -> list[EventPoint]:
        return await self._runner.run(lambda tx: reads.tile_events(tx, q))

    async def tile_roads(self, q: TileQuery) -> list[RoadEdge]:
        return await self._runner.run(lambda tx: reads.tile_roads(tx, q))

    async def extent(self) -> BBox | None:
        return await self._runner.run(reads.extent)

    async def signs(self, bbox: BBox | None) -> list[SignCluster]:
        return await self._runner.run(lambda tx: reads.signs(tx, bbox))

    async def vehicles(self) -> list[VehicleStatus]:
        return await self._runner.run(reads.vehicles)

    async def vehicle(self, vehicle_id: str, fleets: Fleets = None) -> VehicleStatus | None:
        return await self._runner.run(lambda tx: reads.vehicle(tx, vehicle_id, fleets))

    async def metrics(self) -> dict[str, int | float]:
        return await self._runner.run(reads.metrics)

    async def ping(self) -> None:
        await self._runner.run(lambda tx: tx.fetch("SELECT 1"))

    async def cell_page(self, q: FeatureQuery) -> CellPage:
        return await self._runner.run(lambda tx: features.cell_page(tx, q))

    async def sign_page(self, q: FeatureQuery) -> SignPage:
        return await self._runner.run(lambda tx: features.sign_page(tx, q))

    async def count_features(self, collection: str, q: FeatureQuery, cap: int) -> int | None:
        return await self._runner.run(lambda tx: features.count_features(tx, collection, q, cap))

    async def extents(self) -> dict[str, Extent]:
        return await self._runner.run(features.extents)
