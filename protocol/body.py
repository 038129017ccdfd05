"""The batch body: records to and from the msgpack map that gets zstd-compressed.

Bulk data is column-oriented (one array per field) because msgpack then packs plain arrays
of numbers and zstd finds the regularities in them; per-record maps are used only where
records are few (events, health snapshots). Record times are non-negative offsets from the
header's ``t0`` (ms; raw frames in µs), so they stay small and compress well.

``body_from_wire`` is the one place that decides what a valid body is: the decoder runs it
on received data and the encoder runs it on what it is about to send.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, NamedTuple

from protocol import checks
from protocol.envelope import EVIDENCE_SCHEMA_VERSION, SCHEMA_VERSION, RecordCounts
from protocol.limits import (
    MAX_ATTRS,
    MAX_CAN_ID,
    MAX_DURATION_MS,
    MAX_FRAME_DATA_BYTES,
    MAX_HEALTH_VALUES,
    MAX_STD_CAN_ID,
    MAX_TEXT_BYTES,
    MAX_TIME_MS,
)
from protocol.records import (
    Event,
    FrameRef,
    GnssFix,
    Health,
    RawFrame,
    Scalar,
    SignalSeries,
)

# Body map keys, in wire order.
B_SIGNALS: Final = "sig"
B_EVENTS: Final = "evt"
B_GNSS: Final = "gnss"
B_FRAMES: Final = "frm"
B_HEALTH: Final = "hl"
BODY_KEYS: Final = frozenset({B_SIGNALS, B_EVENTS, B_GNSS, B_FRAMES, B_HEALTH})

SERIES_KEYS: Final = frozenset({"name", "unit", "t", "v"})
EVENT_KEYS: Final = frozenset({"type", "t", "spd", "fix", "src", "attrs"})
SOURCE_KEYS: Final = frozenset({"bus", "id"})
# A GNSS fix: the keys of an event's ``fix`` map and of the ``gnss`` columns alike.
FIX_KEYS: Final = frozenset({"t", "lat", "lon", "mode", "alt", "spd", "trk", "clk"})
FRAME_KEYS: Final = frozenset({"bus", "t", "id", "data", "ext"})
# Schema 2: each frame names the event it is evidence for (that event's absolute time, ms,
# on the frame's bus), or nil. Absolute, because the event travels in an urgent batch of
# its own while its frames follow in bulk batches with other t0s.
F_EVENT: Final = "ev"
FRAME_KEYS_V2: Final = FRAME_KEYS | {F_EVENT}
HEALTH_KEYS: Final = frozenset({"t", "values"})

MAX_GNSS_MODE: Final = 3
US_PER_MS: Final = 1000


class Body(NamedTuple):
    """The records of one batch, in the order they are sent."""

    signals: tuple[SignalSeries, ...] = ()
    events: tuple[Event, ...] = ()
    gnss: tuple[GnssFix, ...] = ()
    frames: tuple[RawFrame, ...] = ()
    health: tuple[Health, ...] = ()

    def counts(self) -> RecordCounts:
        return RecordCounts(
            signal_samples=sum(len(series.times_ms) for series in self.signals),
            events=len(self.events),
            gnss_fixes=len(self.gnss),
            raw_frames=len(self.frames),
            health=len(self.health),
        )


def body_version(body: Body) -> int:
    """The lowest schema version that expresses ``body``: 2 when a frame is linked to an
    event, else 1 (which every consumer reads)."""
    linked = any(f.event_ms is not None for f in body.frames)
    return EVIDENCE_SCHEMA_VERSION if linked else SCHEMA_VERSION


# Encoding -------------------------------------------------------------------------------


def _offsets(times: object, field: str, first: int, last: int, max_len: int) -> list[int]:
    # Check the absolute times before subtracting: arithmetic on a wrong type would either
    # raise an unrelated exception or silently produce a number.
    absolute = checks.int_column(times, field, first, last, max_len)
    return list(map((-first).__add__, absolute))


def _sorted_scalars(values: object, field: str, max_entries: int) -> dict[str, Scalar]:
    # Sorted keys make the encoding canonical: equal batches give equal bytes.
    checked = checks.scalar_map(values, field, max_entries, MAX_TEXT_BYTES)
    return dict(sorted(checked.items()))


def _fix_to_wire(fix: GnssFix) -> dict[str, object]:
    return {
        "t": fix.time_ms,
        "lat": fix.lat,
        "lon": fix.lon,
        "mode": fix.mode,
        "alt": fix.alt_m,
        "spd": fix.speed_mps,
        "trk": fix.track_deg,
        "clk": fix.clock_offset_ms,
    }


def _event_to_wire(event: Event, first_ms: int, last_ms: int) -> dict[str, object]:
    checks.int_in(event.time_ms, "evt.t", first_ms, last_ms)
    source = event.source
    return {
        "type": event.type,
        "t": event.time_ms - first_ms,
        "spd": event.speed_kmh,
        "fix": None if event.fix is None else _fix_to_wire(event.fix),
        "src": None if source is None else {"bus": source.bus, "id": source.can_id},
        "attrs": _sorted_scalars(event.attrs, "evt.attrs", MAX_ATTRS),
    }


def _frame_links(frames: Sequence[RawFrame], version: int, max_len: int) -> dict[str, object]:
    """The ``ev`` column for schema 2; nothing for schema 1, which cannot carry a link."""
    links = [f.event_ms for f in frames]
    if version < EVIDENCE_SCHEMA_VERSION:
        if any(link is not None for link in links):
            checks.fail(f"frm.{F_EVENT}", "a frame linked to an event needs schema 2")
        return {}
    return {F_EVENT: list(checks.opt_int_column(links, f"frm.{F_EVENT}", 0, MAX_TIME_MS, max_len))}


def body_to_wire(
    body: Body, first_ms: int, last_ms: int, max_array_len: int, version: int | None = None
) -> dict[str, object]:
    """The body map for records whose times lie in [first_ms, last_ms] (checked here), in
    schema ``version`` (default: the lowest that expresses the body)."""
    span = (first_ms, last_ms)
    gnss = body.gnss
    frames = body.frames
    if version is None:
        version = body_version(body)
    return {
        B_SIGNALS: [
            {
                "name": series.name,
                "unit": series.unit,
                "t": _offsets(series.times_ms, "sig.t", *span, max_array_len),
                "v": series.values,
            }
            for series in body.signals
        ],
        B_EVENTS: [_event_to_wire(e, first_ms, last_ms) for e in body.events],
        B_GNSS: {
            "t": _offsets([f.time_ms for f in gnss], "gnss.t", *span, max_array_len),
            "lat": [f.lat for f in gnss],
            "lon": [f.lon for f in gnss],
            "mode": [f.mode for f in gnss],
            "alt": [f.alt_m for f in gnss],
            "spd": [f.speed_mps for f in gnss],
            "trk": [f.track_deg for f in gnss],
            "clk": [f.clock_offset_ms for f in gnss],
        },
        B_FRAMES: {
            "bus": [f.bus for f in frames],
            "t": _offsets(
                [f.time_us for f in frames],
                "frm.t",
                first_ms * US_PER_MS,
                last_ms * US_PER_MS + US_PER_MS - 1,
                max_array_len,
            ),
            "id": [f.can_id for f in frames],
            "data": [f.data for f in frames],
            "ext": [f.extended for f in frames],
            **_frame_links(frames, version, max_array_len),
        },
        B_HEALTH: [
            {
                "t": checks.int_in(snapshot.time_ms, "hl.t", *span) - first_ms,
                "values": _sorted_scalars(snapshot.values, "hl.values", MAX_HEALTH_VALUES),
            }
            for snapshot in body.health
        ],
    }


# Decoding -------------------------------------------------------------------------------


def _maps(
    value: object, field: str, keys: frozenset[str], max_len: int
) -> Iterable[Mapping[str, object]]:
    return (checks.fields(item, field, keys) for item in checks.array(value, field, max_len))


def _series(wire: Mapping[str, object], first_ms: int, span: int, max_len: int) -> SignalSeries:
    times = checks.int_column(wire["t"], "sig.t", 0, span, max_len)
    if not times:
        checks.fail("sig.t", "a series has at least one sample")
    values = checks.number_column(wire["v"], "sig.v", max_len, nullable=True)
    checks.same_length("sig.v", len(times), values)
    return SignalSeries(
        name=checks.name(wire["name"], "sig.name"),
        times_ms=tuple(map(first_ms.__add__, times)),
        values=tuple(values),
        unit=checks.name(wire["unit"], "sig.unit", allow_empty=True),
    )


def _fix(wire: Mapping[str, object]) -> GnssFix:
    # An event's fix carries an absolute time: the last fix before an event may predate the
    # batch, so it cannot be an offset from t0.
    return GnssFix(
        time_ms=checks.uint(wire["t"], "evt.fix.t", MAX_TIME_MS),
        lat=checks.number(wire["lat"], "evt.fix.lat", -90, 90),
        lon=checks.number(wire["lon"], "evt.fix.lon", -180, 180),
        mode=checks.int_in(wire["mode"], "evt.fix.mode", 0, MAX_GNSS_MODE),
        alt_m=checks.opt_number(wire["alt"], "evt.fix.alt"),
        speed_mps=checks.opt_number(wire["spd"], "evt.fix.spd", 0),
        track_deg=checks.opt_number(wire["trk"], "evt.fix.trk", 0, 360),
        clock_offset_ms=checks.opt_int_in(
            wire["clk"], "evt.fix.clk", -MAX_DURATION_MS, MAX_DURATION_MS
        ),
    )


def _source(wire: object) -> FrameRef | None:
    if wire is None:
        return None
    source = checks.fields(wire, "evt.src", SOURCE_KEYS)
    return FrameRef(
        bus=checks.name(source["bus"], "evt.src.bus"),
        can_id=checks.uint(source["id"], "evt.src.id", MAX_CAN_ID),
    )


def _event(wire: Mapping[str, object], first_ms: int, span: int) -> Event:
    fix = wire["fix"]
    return Event(
        type=checks.name(wire["type"], "evt.type"),
        time_ms=first_ms + checks.uint(wire["t"], "evt.t", span),
        speed_kmh=checks.opt_number(wire["spd"], "evt.spd"),
        fix=None if fix is None else _fix(checks.fields(fix, "evt.fix", FIX_KEYS)),
        source=_source(wire["src"]),
        attrs=checks.scalar_map(wire["attrs"], "evt.attrs", MAX_ATTRS, MAX_TEXT_BYTES),
    )


def _gnss(value: object, first_ms: int, span: int, max_len: int) -> tuple[GnssFix, ...]:
    wire = checks.fields(value, B_GNSS, FIX_KEYS)
    times = checks.int_column(wire["t"], "gnss.t", 0, span, max_len)
    n = len(times)
    columns = (
        checks.number_column(wire["lat"], "gnss.lat", max_len, lo=-90, hi=90),
        checks.number_column(wire["lon"], "gnss.lon", max_len, lo=-180, hi=180),
        checks.int_column(wire["mode"], "gnss.mode", 0, MAX_GNSS_MODE, max_len),
        checks.number_column(wire["alt"], "gnss.alt", max_len, nullable=True),
        checks.number_column(wire["spd"], "gnss.spd", max_len, lo=0, nullable=True),
        checks.number_column(wire["trk"], "gnss.trk", max_len, lo=0, hi=360, nullable=True),
        checks.opt_int_column(wire["clk"], "gnss.clk", -MAX_DURATION_MS, MAX_DURATION_MS, max_len),
    )
    names = ("lat", "lon", "mode", "alt", "spd", "trk", "clk")
    for key, column in zip(names, columns, strict=True):
        checks.same_length(f"gnss.{key}", n, column)
    return tuple(map(GnssFix, map(first_ms.__add__, times), *columns))


def _frames(
    value: object, first_ms: int, span: int, max_len: int, version: int
) -> tuple[RawFrame, ...]:
    linked = version >= EVIDENCE_SCHEMA_VERSION
    wire = checks.fields(value, B_FRAMES, FRAME_KEYS_V2 if linked else FRAME_KEYS)
    times = checks.int_column(wire["t"], "frm.t", 0, span * US_PER_MS + US_PER_MS - 1, max_len)
    n = len(times)
    buses = checks.name_column(wire["bus"], "frm.bus", max_len)
    ids = checks.int_column(wire["id"], "frm.id", 0, MAX_CAN_ID, max_len)
    data = checks.bytes_column(wire["data"], "frm.data", max_len, MAX_FRAME_DATA_BYTES)
    extended = checks.bool_column(wire["ext"], "frm.ext", max_len)
    for key, column in (("bus", buses), ("id", ids), ("data", data), ("ext", extended)):
        checks.same_length(f"frm.{key}", n, column)
    for index, (can_id, ext) in enumerate(zip(ids, extended, strict=True)):
        if not ext and can_id > MAX_STD_CAN_ID:
            checks.fail("frm.id", f"element {index}: {can_id} is not an 11-bit identifier")
    links: Sequence[int | None] = [None] * n
    if linked:
        links = checks.opt_int_column(wire[F_EVENT], f"frm.{F_EVENT}", 0, MAX_TIME_MS, max_len)
        checks.same_length(f"frm.{F_EVENT}", n, links)
    first_us = first_ms * US_PER_MS
    return tuple(map(RawFrame, buses, map(first_us.__add__, times), ids, data, extended, links))


def _health(wire: Mapping[str, object], first_ms: int, span: int) -> Health:
    return Health(
        time_ms=first_ms + checks.uint(wire["t"], "hl.t", span),
        values=checks.scalar_map(wire["values"], "hl.values", MAX_HEALTH_VALUES, MAX_TEXT_BYTES),
    )


def body_from_wire(
    value: object, first_ms: int, last_ms: int, max_array_len: int, version: int = SCHEMA_VERSION
) -> Body:
    """Check a body map of schema ``version`` against the header's time span and return
    its records."""
    wire = checks.fields(value, "", BODY_KEYS)
    span = last_ms - first_ms
    return Body(
        signals=tuple(
            _series(item, first_ms, span, max_array_len)
            for item in _maps(wire[B_SIGNALS], B_SIGNALS, SERIES_KEYS, max_array_len)
        ),
        events=tuple(
            _event(item, first_ms, span)
            for item in _maps(wire[B_EVENTS], B_EVENTS, EVENT_KEYS, max_array_len)
        ),
        gnss=_gnss(wire[B_GNSS], first_ms, span, max_array_len),
        frames=_frames(wire[B_FRAMES], first_ms, span, max_array_len, version),
        health=tuple(
            _health(item, first_ms, span)
            for item in _maps(wire[B_HEALTH], B_HEALTH, HEALTH_KEYS, max_array_len)
        ),
    )


def time_span(body: Body) -> tuple[int, int] | None:
    """The earliest and latest record time in ms (raw frames rounded down), or None if
    there are no records. Raises InvalidField if a record time is not a valid time."""
    unbounded = sys.maxsize  # array lengths are checked when the body is encoded
    groups: list[Sequence[int]] = [
        checks.int_column(series.times_ms, "sig.t", 0, MAX_TIME_MS, unbounded)
        for series in body.signals
    ]
    groups.append(
        checks.int_column([e.time_ms for e in body.events], "evt.t", 0, MAX_TIME_MS, unbounded)
    )
    groups.append(
        checks.int_column([f.time_ms for f in body.gnss], "gnss.t", 0, MAX_TIME_MS, unbounded)
    )
    groups.append(
        checks.int_column([h.time_ms for h in body.health], "hl.t", 0, MAX_TIME_MS, unbounded)
    )
    frame_us = checks.int_column(
        [f.time_us for f in body.frames], "frm.t", 0, (MAX_TIME_MS + 1) * US_PER_MS - 1, unbounded
    )
    groups.append([us // US_PER_MS for us in frame_us])
    present = [group for group in groups if group]
    if not present:
        return None
    return min(map(min, present)), max(map(max, present))
