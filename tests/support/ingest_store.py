"""An in-memory ``ingest_store.IngestStore``: receipts with conflict-ignore and the
contiguous seq per (vehicle, epoch), as the real stores compute them.

``hold`` lets a test decide when each batch's transaction finishes (so completions can
come out of order), ``fail`` makes the transaction of a batch fail once. ``journal``
(shared with ``FakeBroker``) records each commit in order.
"""

from __future__ import annotations

import asyncio

from cloud_collector.errors import StoreUnavailableError
from cloud_collector.store.base import DEFAULT_QUARANTINE_LIMITS, IngestResult, QuarantineLimits
from protocol.batch import Batch

Key = tuple[str, int, int]  # vehicle, epoch, seq


class FakeLedger:
    def __init__(self, journal: list[tuple[object, ...]]) -> None:
        self.journal = journal
        self.receipts: dict[tuple[str, int], set[int]] = {}
        self.stored: list[Key] = []  # new batches, in commit order
        self.hold: dict[Key, asyncio.Event] = {}
        self.fail: set[Key] = set()
        self.quarantined: list[tuple[str, str]] = []
        self.presence: list[tuple[str, bool, int]] = []
        self.clock_ahead: list[tuple[str, int]] = []

    def held(self, *keys: Key) -> None:
        for key in keys:
            self.hold[key] = asyncio.Event()

    def release(self, *keys: Key) -> None:
        for key in keys:
            self.hold.pop(key).set()

    def contiguous(self, vehicle: str, epoch: int) -> int:
        seqs = self.receipts.get((vehicle, epoch), set())
        n = 0
        while n + 1 in seqs:
            n += 1
        return n

    async def ingest(
        self, batch: Batch, *, topic_channel: str, payload_bytes: int, received_ms: int
    ) -> IngestResult:
        h = batch.header
        key = (h.vehicle_id, h.epoch, h.seq)
        gate = self.hold.get(key)
        if gate is None:
            await asyncio.sleep(0)
        else:
            await gate.wait()
        if key in self.fail:
            self.fail.discard(key)
            raise StoreUnavailableError(f"fake store: transaction of {key} failed")
        seqs = self.receipts.setdefault((h.vehicle_id, h.epoch), set())
        new = h.seq not in seqs
        if new:
            seqs.add(h.seq)
            self.stored.append(key)
            self.journal.append(("commit", *key))
        return IngestResult(new=new, contiguous_seq=self.contiguous(h.vehicle_id, h.epoch))

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
        await asyncio.sleep(0)
        self.quarantined.append((topic, reason))
        return "stored"

    async def set_presence(self, *, fleet: str, vehicle: str, online: bool, time_ms: int) -> None:
        await asyncio.sleep(0)
        self.presence.append((vehicle, online, time_ms))

    async def note_clock_ahead(
        self, *, fleet: str, vehicle: str, ahead_ms: int, received_ms: int
    ) -> None:
        await asyncio.sleep(0)
        self.clock_ahead.append((vehicle, ahead_ms))
