"""A batch: the envelope header plus the records it carries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protocol import checks
from protocol.body import Body, body_version, time_span
from protocol.envelope import K_BODY, BatchHeader
from protocol.records import Event, GnssFix, Health, RawFrame, SignalSeries


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch as sent on the wire. ``header.counts`` and the header's time bounds must
    agree with the records; ``Batch.build`` fills them in."""

    header: BatchHeader
    signals: tuple[SignalSeries, ...] = ()
    events: tuple[Event, ...] = ()
    gnss: tuple[GnssFix, ...] = ()
    frames: tuple[RawFrame, ...] = ()
    health: tuple[Health, ...] = ()

    @property
    def body(self) -> Body:
        return Body(self.signals, self.events, self.gnss, self.frames, self.health)

    @classmethod
    def build(  # noqa: PLR0913 - one keyword per envelope field and record kind
        cls,
        *,
        fleet_id: str,
        vehicle_id: str,
        epoch: int,
        seq: int,
        sent_ms: int,
        signals: Iterable[SignalSeries] = (),
        events: Iterable[Event] = (),
        gnss: Iterable[GnssFix] = (),
        frames: Iterable[RawFrame] = (),
        health: Iterable[Health] = (),
    ) -> Batch:
        """A batch whose first/last record times, record counts and schema version (the
        lowest that expresses the records) come from the records.

        Raises InvalidField if there is no record or a record time is not a valid time;
        everything else is checked when the batch is encoded.
        """
        body = Body(tuple(signals), tuple(events), tuple(gnss), tuple(frames), tuple(health))
        span = time_span(body)
        if span is None:
            checks.fail(K_BODY, "a batch carries at least one record")
        header = BatchHeader(
            schema_version=body_version(body),
            fleet_id=fleet_id,
            vehicle_id=vehicle_id,
            epoch=epoch,
            seq=seq,
            first_ms=span[0],
            last_ms=span[1],
            sent_ms=sent_ms,
            counts=body.counts(),
        )
        return cls(header, *body)
