"""What the ingest needs from the store: the transactional ledger calls, nothing else.

The ingest is typed on ``IngestStore`` instead of the whole ``store.base.Store``, so the
query side of the store can change without touching receipts and acknowledgements.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cloud_collector.store.base import IngestResult, QuarantineLimits
from protocol.batch import Batch
from protocol.envelope import BatchIdentity


class IngestStore(Protocol):
    """The store calls of the ingest; each one transaction, safe to call concurrently."""

    async def ingest(
        self, batch: Batch, *, topic_channel: str, payload_bytes: int, received_ms: int
    ) -> IngestResult: ...

    async def quarantine(
        self,
        *,
        topic: str,
        payload: bytes,
        reason: str,
        received_ms: int,
        fleet: str | None,
        vehicle: str | None,
        limits: QuarantineLimits = ...,
        retained: bool = False,
    ) -> str: ...

    async def set_presence(
        self, *, fleet: str, vehicle: str, online: bool, time_ms: int
    ) -> None: ...

    async def note_clock_ahead(
        self, *, fleet: str, vehicle: str, ahead_ms: int, received_ms: int
    ) -> None: ...


@runtime_checkable
class IdentifiedQuarantine(Protocol):
    """Optional store capability: quarantine a batch whose identity was readable AND write
    its receipt, returning the contiguous seq to acknowledge (PROTOCOL.md 3.2 and 6:
    quarantined batches count, or one bad batch would block every later ack).

    A store without it still quarantines the payload, but the collector then cannot know
    the contiguous seq, so it sends no end-to-end ack for that batch (never a guessed one:
    acking past a gap would make the taxi delete data that is not stored).
    """

    async def quarantine_batch(
        self,
        *,
        identity: BatchIdentity,
        topic: str,
        payload: bytes,
        reason: str,
        received_ms: int,
        limits: QuarantineLimits = ...,
    ) -> IngestResult: ...
