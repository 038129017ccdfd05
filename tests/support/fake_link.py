"""An in-memory link for the agent's uplink: what a broker plus collector would do.

``FakeLink.connect`` is a connector (``edge_agent.uplink.Connector``): while ``up`` it
yields a session whose ``publish`` decodes the batch, keeps it once per ``(epoch, seq)``
(a resend is not stored twice, as the collector deduplicates) and answers with the
cumulative end-to-end ack of what arrived without gaps; while not ``up`` connecting fails.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from edge_agent.uplink import UplinkError, UplinkSettings
from protocol import Ack, decode_batch
from protocol.batch import Batch


@dataclass
class FakeLink:
    up: bool = True
    batches: dict[tuple[int, int], Batch] = field(default_factory=dict)
    publishes: int = 0
    connects: int = 0
    # The collector's ack comes this long after the publish (a real round trip).
    ack_delay_s: float = 0.0
    _acked: dict[int, int] = field(default_factory=dict)  # epoch -> highest contiguous seq
    _queue: asyncio.Queue[Ack] = field(default_factory=asyncio.Queue)
    _vehicle: str = ""

    @contextlib.asynccontextmanager
    async def connect(self, settings: UplinkSettings) -> AsyncIterator[FakeLink]:
        if not self.up:
            raise UplinkError("cannot connect: the fake link is down")
        self.connects += 1
        self._vehicle = settings.vehicle_id
        yield self

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, timeout_s: float | None = None
    ) -> None:
        if not self.up:
            raise UplinkError(f"publish to {topic} failed: the fake link is down")
        self.publishes += 1
        batch = decode_batch(payload)
        h = batch.header
        self.batches.setdefault((h.epoch, h.seq), batch)
        seqs = {seq for epoch, seq in self.batches if epoch == h.epoch}
        upto = self._acked.get(h.epoch, min(seqs) - 1)
        while upto + 1 in seqs:
            upto += 1
        if upto >= 1 and upto != self._acked.get(h.epoch):
            self._acked[h.epoch] = upto
            ack = Ack(vehicle_id=self._vehicle, epoch=h.epoch, seq=upto, time_ms=0)
            if self.ack_delay_s:
                asyncio.get_running_loop().call_later(self.ack_delay_s, self._queue.put_nowait, ack)
            else:
                self._queue.put_nowait(ack)

    async def acks(self) -> AsyncIterator[Ack]:
        while self.up:
            yield await self._queue.get()
        raise UplinkError("connection lost: the fake link went down")

    def records(self, kind: str) -> list[object]:
        """Every record of one kind (``events``, ``signals``, ``health``...) received."""
        return [r for b in self.batches.values() for r in getattr(b, kind)]
