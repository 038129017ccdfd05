"""Staged chunks: checked once on append, joined into batches without a decode."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.batching import BatchPolicy
from edge_agent.chunks import StagedChunk, encode_chunks, join_chunks, read_chunk
from protocol import Batch, decode_batch, encode_batch
from protocol.body import Body
from protocol.errors import PayloadTooLarge
from protocol.records import Event, SignalSeries
from tests.protocol.strategies import batches
from tests.support.examples import examples

WIDE = BatchPolicy(max_records=1 << 20, max_bytes=1 << 30)
T0 = 1_700_000_000_000


def merged(bodies: list[Body]) -> Body:
    """What a batch of these bodies holds: series of one signal joined, the rest in order."""
    series: dict[tuple[str, str], tuple[list[int], list[float | int | None]]] = {}
    for body in bodies:
        for s in body.signals:
            times, values = series.setdefault((s.name, s.unit), ([], []))
            times.extend(s.times_ms)
            values.extend(s.values)
    return Body(
        signals=tuple(SignalSeries(n, tuple(t), tuple(v), u) for (n, u), (t, v) in series.items()),
        events=tuple(e for b in bodies for e in b.events),
        gnss=tuple(f for b in bodies for f in b.gnss),
        frames=tuple(f for b in bodies for f in b.frames),
        health=tuple(h for b in bodies for h in b.health),
    )


def cut(body: Body, marks: list[int]) -> list[Body]:
    """``body`` cut into consecutive parts, each kind keeping its order."""
    parts = []
    for i in range(len(marks) + 1):
        parts.append(
            Body(*(records[i :: len(marks) + 1] for records in body))  # type: ignore[arg-type]
        )
    return parts


def payload_of(batch: Batch, chunks: list[StagedChunk]) -> bytes:
    h = batch.header
    return join_chunks(chunks).payload(
        fleet_id=h.fleet_id, vehicle_id=h.vehicle_id, epoch=h.epoch, seq=h.seq, sent_ms=h.sent_ms
    )


@settings(max_examples=examples(60), deadline=None)
@given(batches(), st.lists(st.integers(0, 3), max_size=3))
def test_joined_chunks_are_the_bytes_the_records_encode_to_at_once(
    batch: Batch, marks: list[int]
) -> None:
    parts = cut(batch.body, marks)
    chunks = [c for part in parts for c in encode_chunks(WIDE, part)]
    body = merged([p for p in parts if any(p)])
    h = batch.header
    expected = encode_batch(
        Batch.build(
            fleet_id=h.fleet_id,
            vehicle_id=h.vehicle_id,
            epoch=h.epoch,
            seq=h.seq,
            sent_ms=h.sent_ms,
            **body._asdict(),
        )
    )
    assert payload_of(batch, chunks) == expected


@settings(max_examples=examples(60), deadline=None)
@given(batches(), st.integers(1, 6), st.integers(40, 400))
def test_a_large_append_is_split_within_the_limits_and_loses_nothing(
    batch: Batch, max_records: int, max_bytes: int
) -> None:
    policy = BatchPolicy(max_records=max_records, max_bytes=max_bytes)
    chunks = encode_chunks(policy, batch.body)
    for chunk in chunks:
        # A chunk may pass a limit only as a single record or a single series.
        body = read_chunk(chunk)
        items = sum(map(len, (body["sig"], body["evt"], body["gnss"]["t"], body["frm"]["t"])))
        if items + len(body["hl"]) > 1:
            assert chunk.count <= max_records
            assert len(chunk.blob) <= max_bytes
    decoded = decode_batch(payload_of(batch, chunks))
    assert decoded.body == merged([batch.body])
    assert sum(c.count for c in chunks) == batch.header.counts.total


def test_an_over_long_batch_is_refused_at_close_for_splitting() -> None:
    # Each chunk is valid; together their series would pass the protocol's array limit.
    half = 600_000
    chunks = [
        encode_chunks(WIDE, Body(signals=(SignalSeries("v", (T0,) * half,
                                                       (1.0,) * half, "m/s"),)))[0]
        for _ in range(2)
    ]  # fmt: skip
    with pytest.raises(PayloadTooLarge, match=r"sig\.t"):
        join_chunks(chunks)
    assert join_chunks(chunks[:1]).counts.signal_samples == half


def test_notices_are_flagged_and_times_rebased() -> None:
    late = Event("outbox_evicted", T0 + 5_000, None, None, None, {"epoch": "1"})
    early = Event("fcw", T0, None, None, None, {})
    chunks = encode_chunks(WIDE, Body(events=(late,))) + encode_chunks(WIDE, Body(events=(early,)))
    closed = join_chunks(chunks)
    assert (closed.first_ms, closed.last_ms, closed.notice) == (T0, T0 + 5_000, True)
    assert not join_chunks(chunks[1:]).notice
    payload = closed.payload(fleet_id="f", vehicle_id="v", epoch=1, seq=1, sent_ms=T0)
    assert [e.time_ms for e in decode_batch(payload).events] == [T0 + 5_000, T0]
