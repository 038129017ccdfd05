"""The encoder refuses what a consumer would reject, with the same errors."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    MAX_ARRAY_LEN,
    Batch,
    BatchHeader,
    Event,
    FrameRef,
    GnssFix,
    Health,
    InvalidField,
    PayloadTooLarge,
    ProtocolError,
    RawFrame,
    RecordCounts,
    SignalSeries,
    UnsupportedSchemaVersion,
    decode_batch,
    encode_batch,
)
from tests.protocol import samples
from tests.support.examples import examples

T0 = samples.T0


def _batch(**records: object) -> Batch:
    return Batch.build(
        fleet_id="demo",
        vehicle_id="taxi-001",
        epoch=1,
        seq=1,
        sent_ms=T0,
        **records,  # type: ignore[arg-type]
    )


def _series(values: tuple[object, ...], name: str = "s") -> SignalSeries:
    times = tuple(T0 + i for i in range(len(values)))
    return SignalSeries(name, times, values)  # type: ignore[arg-type]


def _event(**changes: object) -> Event:
    event = Event("fcw", T0, None, None, None)
    return dataclasses.replace(event, **changes)  # type: ignore[arg-type]


def test_build_fills_times_and_counts() -> None:
    batch = samples.full_batch()
    header = batch.header
    assert header.first_ms == T0  # the earliest records: a gnss fix and a sample at T0
    assert header.last_ms == T0 + 60_000
    assert header.counts == RecordCounts(
        signal_samples=10, events=2, gnss_fixes=3, raw_frames=2, health=1
    )
    assert header.counts.total == 18


def test_build_counts_raw_frames_in_their_millisecond() -> None:
    frame = RawFrame("can0", T0 * 1000 + 999, 1, b"")
    batch = _batch(frames=[frame])
    assert (batch.header.first_ms, batch.header.last_ms) == (T0, T0)
    assert decode_batch(encode_batch(batch)).frames == (frame,)


def test_build_needs_a_record() -> None:
    with pytest.raises(InvalidField) as caught:
        _batch()
    assert caught.value.reason == "bad_field:body"


@pytest.mark.parametrize(
    ("records", "field"),
    [
        ({"signals": [SignalSeries("s", (None,), (1,))]}, "sig.t"),  # type: ignore[arg-type]
        ({"events": [_event(time_ms=1.5)]}, "evt.t"),
        ({"gnss": [GnssFix(-1, 0, 0, 3)]}, "gnss.t"),
        ({"frames": [RawFrame("c", T0 * 1000.0, 1, b"")]}, "frm.t"),  # type: ignore[arg-type]
        ({"health": [Health(2**53, {})]}, "hl.t"),
    ],
)
def test_build_rejects_bad_times(records: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidField) as caught:
        _batch(**records)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("records", "field"),
    [
        ({"signals": [_series((float("nan"),))]}, "sig.v"),
        ({"signals": [_series((1.0, float("inf")))]}, "sig.v"),
        ({"signals": [_series((True,))]}, "sig.v"),
        ({"signals": [_series((2**63,))]}, "sig.v"),
        ({"signals": [_series((1.0,), name="")]}, "sig.name"),
        ({"signals": [_series((1.0,), name="\ud800")]}, "sig.name"),
        ({"signals": [_series((1.0,), name="x" * 129)]}, "sig.name"),
        ({"signals": [SignalSeries("s", (T0, T0), (1.0,))]}, "sig.v"),
        ({"signals": [SignalSeries("s", (T0,), (1.0,), "\x00")]}, "sig.unit"),
        ({"events": [_event(type="")]}, "evt.type"),
        ({"events": [_event(speed_kmh=float("nan"))]}, "evt.spd"),
        ({"events": [_event(attrs={1: 2})]}, "evt.attrs"),
        ({"events": [_event(attrs={"a": [1]})]}, "evt.attrs"),
        ({"events": [_event(attrs={"a": 10**5000})]}, "evt.attrs"),
        ({"events": [_event(attrs={"a": "x" * 1025})]}, "evt.attrs"),
        ({"events": [_event(source=FrameRef("can0", -1))]}, "evt.src.id"),
        ({"events": [_event(fix=GnssFix(T0, 91.0, 0.0, 3))]}, "evt.fix.lat"),
        ({"gnss": [GnssFix(T0, 0.0, 0.0, 5)]}, "gnss.mode"),
        ({"gnss": [GnssFix(T0, 0.0, 0.0, 3, speed_mps=-1.0)]}, "gnss.spd"),
        ({"gnss": [GnssFix(T0, 0.0, 0.0, 3, track_deg=float("nan"))]}, "gnss.trk"),
        ({"frames": [RawFrame("can0", T0 * 1000, 0x800, b"")]}, "frm.id"),
        ({"frames": [RawFrame("can0", T0 * 1000, 1, bytearray(1))]}, "frm.data"),  # type: ignore[arg-type]
        ({"frames": [RawFrame("can0", T0 * 1000, 1, bytes(65))]}, "frm.data"),
        ({"frames": [RawFrame("", T0 * 1000, 1, b"")]}, "frm.bus"),
        ({"health": [Health(T0, {"a": float("-inf")})]}, "hl.values"),
        ({"health": [Health(T0, {f"k{i}": i for i in range(257)})]}, "hl.values"),
    ],
)
def test_encode_rejects_bad_records(records: dict[str, object], field: str) -> None:
    batch = _batch(**records)
    with pytest.raises(InvalidField) as caught:
        encode_batch(batch)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"vehicle_id": "taxi/1"}, "veh"),
        ({"fleet_id": ""}, "flt"),
        ({"epoch": 2**64}, "ep"),
        ({"epoch": -1}, "ep"),
        ({"seq": -1}, "seq"),
        ({"seq": 0}, "seq"),
        ({"sent_ms": None}, "sent"),
        ({"first_ms": T0 + 1}, "sig.t"),  # the samples start before the header says
        ({"last_ms": T0 - 1}, "t1"),
        ({"counts": RecordCounts(signal_samples=3)}, "ns"),
        ({"counts": RecordCounts(signal_samples=2, events=1)}, "ne"),
        ({"counts": RecordCounts()}, "body"),
    ],
)
def test_encode_rejects_bad_header(change: dict[str, object], field: str) -> None:
    batch = _batch(signals=[_series((1.0, 2.0))])
    header = dataclasses.replace(batch.header, **change)  # type: ignore[arg-type]
    with pytest.raises(InvalidField) as caught:
        encode_batch(dataclasses.replace(batch, header=header))
    assert caught.value.field == field


def test_encode_refuses_other_schema_versions() -> None:
    batch = samples.minimal_batch()
    header = dataclasses.replace(batch.header, schema_version=3)
    with pytest.raises(UnsupportedSchemaVersion):
        encode_batch(dataclasses.replace(batch, header=header))


def test_event_outside_header_span_is_rejected() -> None:
    batch = _batch(signals=[_series((1.0, 2.0))])
    late = dataclasses.replace(batch, events=(_event(time_ms=T0 + 5),))
    header = dataclasses.replace(late.header, counts=RecordCounts(signal_samples=2, events=1))
    with pytest.raises(InvalidField) as caught:
        encode_batch(dataclasses.replace(late, header=header))
    assert caught.value.field == "evt.t"


@pytest.mark.parametrize("level", [0, 20, -1, 3.0])
def test_bad_level(level: object) -> None:
    with pytest.raises(ValueError, match="level"):
        encode_batch(samples.minimal_batch(), level=level)  # type: ignore[arg-type]


def test_array_longer_than_the_limit() -> None:
    n = MAX_ARRAY_LEN + 1
    series = SignalSeries("s", (T0,) * n, (0,) * n)
    with pytest.raises(PayloadTooLarge) as caught:
        encode_batch(_batch(signals=[series]))
    assert caught.value.reason == "too_large_element"


def test_payload_larger_than_the_limit() -> None:
    rnd = random.Random(1)
    series = [_series(tuple(rnd.random() for _ in range(40_000)), name=f"s{i}") for i in range(4)]
    with pytest.raises(PayloadTooLarge) as caught:
        encode_batch(_batch(signals=series))
    assert caught.value.reason == "too_large_compressed"


def test_attrs_order_does_not_change_the_bytes() -> None:
    a = _batch(events=[_event(attrs={"a": 1, "b": 2})], health=[Health(T0, {"x": 1, "y": 2})])
    b = _batch(events=[_event(attrs={"b": 2, "a": 1})], health=[Health(T0, {"y": 2, "x": 1})])
    assert encode_batch(a) == encode_batch(b)


def test_header_identity() -> None:
    header = samples.minimal_batch().header
    assert isinstance(header, BatchHeader)
    identity = header.identity
    assert (identity.fleet_id, identity.vehicle_id, identity.epoch, identity.seq) == (
        "demo",
        "taxi-001",
        0x0123456789ABCDEF,
        7,
    )
    assert identity.schema_version == 1


def test_huge_int_next_to_a_float_is_a_field_error() -> None:
    with pytest.raises(InvalidField) as caught:
        encode_batch(_batch(signals=[_series((1.5, 10**400))]))
    assert caught.value.field == "sig.v"
    assert "bits" in caught.value.detail


# Anything a buggy producer might put in a record field.
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.just(T0),
    st.lists(st.integers(T0 - 5, T0 + 5), max_size=3).map(tuple),
    st.dictionaries(st.text(max_size=3), st.integers() | st.floats(), max_size=2),
)


def _one(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[list[object]]:
    return st.lists(strategy, min_size=1, max_size=2)


junk_records = st.fixed_dictionaries(
    {},
    optional={
        "signals": _one(st.builds(SignalSeries, junk, junk, junk, junk)),
        "events": _one(
            st.builds(
                Event,
                junk,
                junk,
                junk,
                st.none() | st.builds(GnssFix, junk, junk, junk, junk),
                st.none() | st.builds(FrameRef, junk, junk),
                junk,
            )
        ),
        "gnss": _one(st.builds(GnssFix, junk, junk, junk, junk, junk, junk, junk, junk)),
        "frames": _one(st.builds(RawFrame, junk, junk, junk, junk, junk)),
        "health": _one(st.builds(Health, junk, junk)),
    },
)


@settings(max_examples=examples(300), deadline=None)
@given(junk_records)
def test_junk_field_values_give_protocol_errors(records: dict[str, list[object]]) -> None:
    # Wrong values inside records are the producer's data problem and must surface as
    # ProtocolError (InvalidField mostly), never as a TypeError or OverflowError.
    try:
        batch = _batch(**records)
        payload = encode_batch(batch)
    except ProtocolError:
        return
    assert decode_batch(payload) == batch
