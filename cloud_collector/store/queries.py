"""The query side on a backend's runner: each method is one read-only ``reads`` (or
``health``) function in one transaction. Another query engine implements
``base.Queries`` on its own and leaves the ledger as it is."""

from __future__ import annotations

from cloud_collector.store import health, reads
from cloud_collector.store.base import (
    BBox,
    CellHour,
    EventEvidence,
    EventPage,
    EventQuery,
    Fleets,
    HealthPoint,
    HealthQuery,
    RoadQuery,
    SignCluster,
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
