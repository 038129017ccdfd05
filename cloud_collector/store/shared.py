"""What both backends share: every ``Store`` method is one engine function in one transaction.

A backend supplies ``_run`` (open a transaction, run the work, translate its driver's
errors into ``StoreError``) and ``close``; the rest is here, once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cloud_collector.store import engine, health
from cloud_collector.store.base import (
    DEFAULT_QUARANTINE_LIMITS,
    BBox,
    CellHour,
    EventPage,
    EventQuery,
    HealthPoint,
    HealthQuery,
    IngestResult,
    QuarantineLimits,
    RoadQuery,
    SignCluster,
    VehicleHealth,
    VehicleStatus,
)
from cloud_collector.store.engine import Tx
from protocol.batch import Batch
from protocol.envelope import BatchIdentity

T = TypeVar("T")


class EngineStore(ABC):
    """The ``Store`` methods on top of a backend's transaction runner."""

    def __init__(self, gap_grace_ms: int | None) -> None:
        self._grace_ms = gap_grace_ms

    @abstractmethod
    async def _run(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction of this backend."""

    @abstractmethod
    async def close(self) -> None: ...

    async def ingest(
        self, batch: Batch, *, topic_channel: str, payload_bytes: int, received_ms: int
    ) -> IngestResult:
        return await self._run(
            lambda tx: engine.ingest(
                tx,
                batch,
                channel=topic_channel,
                payload_bytes=payload_bytes,
                received_ms=received_ms,
                grace_ms=self._grace_ms,
            )
        )

    async def quarantine(
        self,
        *,
        topic: str,
        payload: bytes,
        reason: str,
        received_ms: int,
        fleet: str | None,
        vehicle: str | None,
        limits: QuarantineLimits = DEFAULT_QUARANTINE_LIMITS,
        retained: bool = False,
    ) -> str:
        return await self._run(
            lambda tx: engine.quarantine(
                tx,
                topic=topic,
                payload=payload,
                reason=reason,
                received_ms=received_ms,
                fleet=fleet,
                vehicle=vehicle,
                limits=limits,
                retained=retained,
            )
        )

    async def quarantine_batch(
        self,
        *,
        identity: BatchIdentity,
        topic: str,
        payload: bytes,
        reason: str,
        received_ms: int,
        limits: QuarantineLimits = DEFAULT_QUARANTINE_LIMITS,
    ) -> IngestResult:
        return await self._run(
            lambda tx: engine.quarantine_batch(
                tx,
                identity=identity,
                topic=topic,
                payload=payload,
                reason=reason,
                received_ms=received_ms,
                grace_ms=self._grace_ms,
                limits=limits,
            )
        )

    async def set_presence(self, *, fleet: str, vehicle: str, online: bool, time_ms: int) -> None:
        await self._run(lambda tx: engine.set_presence(tx, fleet, vehicle, online, time_ms))

    async def note_clock_ahead(
        self, *, fleet: str, vehicle: str, ahead_ms: int, received_ms: int
    ) -> None:
        await self._run(
            lambda tx: health.note_clock_ahead(
                tx, fleet=fleet, vehicle=vehicle, ahead_ms=ahead_ms, received_ms=received_ms
            )
        )

    async def health_history(self, q: HealthQuery) -> list[HealthPoint]:
        return await self._run(lambda tx: health.history(tx, q))

    async def vehicle_health(self, vehicle_id: str | None = None) -> list[VehicleHealth]:
        return await self._run(
            lambda tx: health.vehicle_health(
                tx, vehicle_id, engine.STATUS_COLUMNS, engine.status_of
            )
        )

    async def events(self, q: EventQuery) -> EventPage:
        return await self._run(lambda tx: engine.events(tx, q))

    async def road_conditions(self, q: RoadQuery) -> list[CellHour]:
        return await self._run(lambda tx: engine.road_conditions(tx, q))

    async def signs(self, bbox: BBox | None) -> list[SignCluster]:
        return await self._run(lambda tx: engine.signs(tx, bbox))

    async def vehicles(self) -> list[VehicleStatus]:
        return await self._run(engine.vehicles)

    async def vehicle(self, vehicle_id: str) -> VehicleStatus | None:
        return await self._run(lambda tx: engine.vehicle(tx, vehicle_id))

    async def metrics(self) -> dict[str, int | float]:
        return await self._run(engine.metrics)

    async def ping(self) -> None:
        await self._run(lambda tx: tx.fetch("SELECT 1"))
