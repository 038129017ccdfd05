"""The ingest ledger on a backend's runner: each method is one ``engine`` function in one
transaction. Receipts, acks, eviction receipts, quarantine, presence and the batch write
itself, and nothing the API reads."""

from __future__ import annotations

from cloud_collector.store import engine, health
from cloud_collector.store.base import (
    DEFAULT_QUARANTINE_LIMITS,
    IngestResult,
    QuarantineLimits,
)
from cloud_collector.store.shared import Runner
from protocol.batch import Batch
from protocol.envelope import BatchIdentity


class EngineLedger:
    """``base.Ledger`` over ``runner``; ``gap_grace_ms``: see ``DEFAULT_GAP_GRACE_MS``;
    ``contributions_ms``: see ``engine.ingest``."""

    def __init__(
        self, runner: Runner, gap_grace_ms: int | None, contributions_ms: int | None = None
    ) -> None:
        self._runner = runner
        self._grace_ms = gap_grace_ms
        self._contributions_ms = contributions_ms

    async def ingest(
        self, batch: Batch, *, topic_channel: str, payload_bytes: int, received_ms: int
    ) -> IngestResult:
        return await self._runner.run(
            lambda tx: engine.ingest(
                tx,
                batch,
                channel=topic_channel,
                payload_bytes=payload_bytes,
                received_ms=received_ms,
                grace_ms=self._grace_ms,
                contributions_ms=self._contributions_ms,
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
        return await self._runner.run(
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
        return await self._runner.run(
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
        await self._runner.run(lambda tx: engine.set_presence(tx, fleet, vehicle, online, time_ms))

    async def note_clock_ahead(
        self, *, fleet: str, vehicle: str, ahead_ms: int, received_ms: int
    ) -> None:
        await self._runner.run(
            lambda tx: health.note_clock_ahead(
                tx, fleet=fleet, vehicle=vehicle, ahead_ms=ahead_ms, received_ms=received_ms
            )
        )

    async def ping(self) -> None:
        await self._runner.run(lambda tx: tx.fetch("SELECT 1"))
