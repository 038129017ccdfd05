"""Hypothesis strategies for valid protocol values, spanning every documented range."""

from __future__ import annotations

from hypothesis import strategies as st

from protocol import (
    Batch,
    Event,
    FrameRef,
    GnssFix,
    Health,
    RawFrame,
    Scalar,
    SignalSeries,
)
from protocol.ids import ID_PATTERN
from protocol.limits import (
    INT64_MAX,
    INT64_MIN,
    MAX_CAN_ID,
    MAX_STD_CAN_ID,
    MAX_TIME_MS,
    UINT64_MAX,
)

ids = st.from_regex(ID_PATTERN, fullmatch=True)
uint64 = st.integers(0, UINT64_MAX)
int64 = st.integers(INT64_MIN, INT64_MAX)
finite = st.floats(allow_nan=False, allow_infinity=False)
# Names: any printable text, including non-ASCII (limits are in UTF-8 bytes, 128).
names = st.text(st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=30)
units = st.one_of(st.just(""), names)
scalars: st.SearchStrategy[Scalar] = st.one_of(
    st.none(),
    st.booleans(),
    int64,
    finite,
    st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
)
scalar_maps = st.dictionaries(names, scalars, max_size=6)
abs_times = st.integers(0, MAX_TIME_MS)


def numbers(lo: float, hi: float) -> st.SearchStrategy[int | float]:
    return st.one_of(st.floats(lo, hi, allow_nan=False), st.integers(int(lo), int(hi)))


def fixes(times: st.SearchStrategy[int]) -> st.SearchStrategy[GnssFix]:
    return st.builds(
        GnssFix,
        time_ms=times,
        lat=numbers(-90, 90),
        lon=numbers(-180, 180),
        mode=st.integers(0, 3),
        alt_m=st.none() | finite,
        speed_mps=st.none() | numbers(0, 1e6),
        track_deg=st.none() | numbers(0, 360),
        clock_offset_ms=st.none() | st.integers(-MAX_TIME_MS, MAX_TIME_MS),
    )


@st.composite
def series(draw: st.DrawFn, times: st.SearchStrategy[int]) -> SignalSeries:
    n = draw(st.integers(1, 20))
    values = st.one_of(st.none(), int64, finite)
    return SignalSeries(
        name=draw(names),
        times_ms=tuple(draw(st.lists(times, min_size=n, max_size=n))),
        values=tuple(draw(st.lists(values, min_size=n, max_size=n))),
        unit=draw(units),
    )


@st.composite
def raw_frames(draw: st.DrawFn, times: st.SearchStrategy[int]) -> RawFrame:
    extended = draw(st.booleans())
    return RawFrame(
        bus=draw(names),
        time_us=draw(times) * 1000 + draw(st.integers(0, 999)),
        can_id=draw(st.integers(0, MAX_CAN_ID if extended else MAX_STD_CAN_ID)),
        data=draw(st.binary(max_size=64)),
        extended=extended,
        event_ms=draw(st.none() | abs_times),
    )


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    # Record times fall in a window that may sit anywhere in the valid time range, from
    # a few ms wide to the whole range (a clock that jumped between records).
    lo = draw(st.one_of(abs_times, st.just(0), st.just(MAX_TIME_MS)))
    width = draw(st.one_of(st.integers(0, 10_000), st.integers(0, MAX_TIME_MS)))
    hi = min(MAX_TIME_MS, lo + width)
    times = st.integers(lo, hi)
    events = st.builds(
        Event,
        type=names,
        time_ms=times,
        speed_kmh=st.none() | finite,
        fix=st.none() | fixes(abs_times),
        source=st.none() | st.builds(FrameRef, names, st.integers(0, MAX_CAN_ID)),
        attrs=scalar_maps,
    )
    records = {
        "signals": draw(st.lists(series(times), max_size=4)),
        "events": draw(st.lists(events, max_size=3)),
        "gnss": draw(st.lists(fixes(times), max_size=4)),
        "frames": draw(st.lists(raw_frames(times), max_size=4)),
        "health": draw(st.lists(st.builds(Health, times, scalar_maps), max_size=2)),
    }
    if not any(records.values()):
        records["health"] = [Health(draw(times), {})]
    return Batch.build(
        fleet_id=draw(ids),
        vehicle_id=draw(ids),
        epoch=draw(uint64),
        seq=draw(st.integers(1, UINT64_MAX)),
        sent_ms=draw(abs_times),
        **records,  # type: ignore[arg-type]
    )
