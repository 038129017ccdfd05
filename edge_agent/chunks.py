"""Staged chunks: records checked once, when they are appended, and kept as the bytes the
batches are made of. Pure: no I/O, no clock.

A chunk is the protocol's body map (``protocol.body``) for some records of one lane, its
times relative to the chunk's first record time, packed as msgpack, behind a CRC-32 that
closing checks instead of the records (see ``_framed``). ``encode_chunks`` is
the one place records are checked: ``body_from_wire``, the checks a consumer runs. Closing
a batch joins chunks at the wire level (``join_chunks``): their time offsets move to the
batch's first time, series of one signal are joined, and the body is compressed once.
Nothing is decoded into records or checked again: every element of a body made of valid
chunks is valid where it lands, so only what depends on the whole batch (array lengths,
body and payload size) is checked at close.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from edge_agent.batching import BatchPolicy, Chunk, plan_batches
from protocol import compression, wire
from protocol.body import (
    B_EVENTS,
    B_FRAMES,
    B_GNSS,
    B_HEALTH,
    B_SIGNALS,
    F_EVENT,
    US_PER_MS,
    Body,
    body_from_wire,
    body_to_wire,
    body_version,
    time_span,
)
from protocol.envelope import (
    EVIDENCE_SCHEMA_VERSION,
    K_BODY,
    SCHEMA_VERSION,
    BatchHeader,
    RecordCounts,
    header_from_wire,
    header_to_wire,
)
from protocol.errors import (
    BAD_MSGPACK,
    TOO_LARGE_COMPRESSED,
    TOO_LARGE_DECOMPRESSED,
    TOO_LARGE_ELEMENT,
    MalformedPayload,
    PayloadTooLarge,
)
from protocol.limits import (
    MAX_ARRAY_LEN,
    MAX_BODY_BYTES,
    MAX_FRAME_DATA_BYTES,
    MAX_HEALTH_VALUES,
    MAX_ID_LEN,
    MAX_PAYLOAD_BYTES,
    MAX_TEXT_BYTES,
    MAX_TIME_MS,
    UINT64_MAX,
)
from protocol.notices import EVICTION_NOTICE

# Column keys in the order ``body_to_wire`` writes them: a joined body packs to the same
# bytes as the same records encoded at once.
GNSS_COLUMNS: Final = ("t", "lat", "lon", "mode", "alt", "spd", "trk", "clk")
FRAME_COLUMNS: Final = ("bus", "t", "id", "data", "ext")
_KINDS: Final = (B_SIGNALS, B_EVENTS, B_GNSS, B_FRAMES, B_HEALTH)

# A wire map as msgpack gives it back; its shape was checked before it was stored.
WireMap = dict[str, Any]


def _envelope_overhead() -> int:
    """Bytes of the largest possible envelope around a body frame: the body is checked
    against the payload limit before the seq it will carry is known."""
    longest = "x" * MAX_ID_LEN
    counts = RecordCounts(
        signal_samples=UINT64_MAX, events=UINT64_MAX, gnss_fixes=UINT64_MAX,
        raw_frames=UINT64_MAX, health=UINT64_MAX,
    )  # fmt: skip
    header = BatchHeader(
        fleet_id=longest, vehicle_id=longest, epoch=UINT64_MAX, seq=UINT64_MAX,
        first_ms=MAX_TIME_MS, last_ms=MAX_TIME_MS, sent_ms=MAX_TIME_MS, counts=counts,
    )  # fmt: skip
    fields = header_to_wire(header)
    fields[K_BODY] = b""
    return len(wire.pack(fields)) + 4  # a bin32 length instead of bin8's


ENVELOPE_OVERHEAD: Final = _envelope_overhead()
# First byte of a stored chunk: 0xC1 is never a msgpack type, and a chunk staged before
# chunks had a checksum starts with its body map (0x85).
CHUNK_MARK: Final = b"\xc1"
_CRC_END: Final = len(CHUNK_MARK) + 4
# The body map of no records (in schema 2, with the frames' evidence column), plus what its
# 17 arrays' headers can grow by (4 bytes each, from fixarray to array32), plus mark and
# checksum: a chunk is this plus its records' own bytes at most.
BODY_OVERHEAD: Final = (
    len(wire.pack(body_to_wire(Body(), 0, 0, MAX_ARRAY_LEN, EVIDENCE_SCHEMA_VERSION)))
    + 17 * 4
    + _CRC_END
)


def _framed(body_map: bytes) -> bytes:
    """A chunk as stored: mark, CRC-32 of the body map, body map. Closing a batch checks
    the checksum, not the records: it catches any change to the bytes append checked."""
    return CHUNK_MARK + zlib.crc32(body_map).to_bytes(4, "big") + body_map


@dataclass(frozen=True, slots=True)
class StagedChunk:
    """Checked records of one lane as stored: ``blob`` is their body map behind its
    checksum (``_framed``), times relative to ``first_ms``; ``count`` counts records as
    the protocol does (samples, not series)."""

    blob: bytes
    first_ms: int
    last_ms: int
    count: int


@dataclass(frozen=True, slots=True)
class ClosedBody:
    """A batch body ready to go: compressed, with what its header says about it."""

    frame: bytes
    first_ms: int
    last_ms: int
    counts: RecordCounts
    notice: bool  # carries an eviction notice
    version: int = SCHEMA_VERSION  # 2 when a frame is linked to an event

    def payload(
        self, *, fleet_id: str, vehicle_id: str, epoch: int, seq: int, sent_ms: int
    ) -> bytes:
        """The wire batch. The header is new here, so here is where it is checked."""
        header = BatchHeader(
            fleet_id=fleet_id, vehicle_id=vehicle_id, epoch=epoch, seq=seq,
            first_ms=self.first_ms, last_ms=self.last_ms, sent_ms=sent_ms, counts=self.counts,
            schema_version=self.version,
        )  # fmt: skip
        fields = header_to_wire(header)
        header_from_wire(fields)
        fields[K_BODY] = self.frame
        return wire.pack(fields)


# Append: check once, keep the bytes -------------------------------------------------------


def encode_chunks(policy: BatchPolicy, body: Body) -> list[StagedChunk]:
    """``body`` checked and packed as chunks within the policy's batch limits (a single
    record larger than a limit is a chunk of its own). Raises a ProtocolError for a record
    that could never be sent; nothing is returned then."""
    span = time_span(body)
    if span is None:
        return []
    version = body_version(body)
    body_wire = body_to_wire(body, *span, MAX_ARRAY_LEN, version)
    body_from_wire(body_wire, *span, MAX_ARRAY_LEN, version)
    blob = _framed(wire.pack(body_wire))
    count = body.counts().total
    if (len(blob) <= policy.max_bytes and count <= policy.max_records) or sum(map(len, body)) < 2:
        return [StagedChunk(blob, span[0], span[1], count)]
    return _split(policy, body_wire, span[0])


def _items(body_wire: Mapping[str, Any]) -> list[tuple[str, int, int, int]]:
    """(kind, index, records, packed bytes) of every record of a checked body map; a
    signal series is one item of as many records as samples."""
    items = [
        (B_SIGNALS, i, len(s["t"]), len(wire.pack(s))) for i, s in enumerate(body_wire[B_SIGNALS])
    ]
    items += [(B_EVENTS, i, 1, len(wire.pack(e))) for i, e in enumerate(body_wire[B_EVENTS])]
    for kind in (B_GNSS, B_FRAMES):
        columns = list(body_wire[kind].values())
        items += [
            (kind, i, 1, len(wire.pack([c[i] for c in columns]))) for i in range(len(columns[0]))
        ]
    items += [(B_HEALTH, i, 1, len(wire.pack(h))) for i, h in enumerate(body_wire[B_HEALTH])]
    return items


def _split(policy: BatchPolicy, body_wire: Mapping[str, Any], first_ms: int) -> list[StagedChunk]:
    """A checked body map too large for one chunk, as several, planned on the sizes of its
    records (``plan_batches``). Offsets only shrink when rebased on a later first time, so
    a chunk of several records stays within ``max_bytes``."""
    items = _items(body_wire)
    budget = BatchPolicy(
        max_records=policy.max_records, max_bytes=max(1, policy.max_bytes - BODY_OVERHEAD)
    )
    plan = plan_batches(
        budget, [Chunk(n, count, size) for n, (_, _, count, size) in enumerate(items)]
    )
    chunks = []
    for group in plan:
        picked: dict[str, list[int]] = {kind: [] for kind in _KINDS}
        for n in group:
            picked[items[n][0]].append(items[n][1])
        part: WireMap = {
            B_SIGNALS: [body_wire[B_SIGNALS][i] for i in picked[B_SIGNALS]],
            B_EVENTS: [body_wire[B_EVENTS][i] for i in picked[B_EVENTS]],
            B_GNSS: {k: [c[i] for i in picked[B_GNSS]] for k, c in body_wire[B_GNSS].items()},
            B_FRAMES: {k: [c[i] for i in picked[B_FRAMES]] for k, c in body_wire[B_FRAMES].items()},
            B_HEALTH: [body_wire[B_HEALTH][i] for i in picked[B_HEALTH]],
        }  # fmt: skip
        low, high = _offset_span(part)
        shifted = _shift(part, -low)
        count = sum(items[n][2] for n in group)
        blob = _framed(wire.pack(shifted))
        chunks.append(StagedChunk(blob, first_ms + low, first_ms + high, count))
    return chunks


def _offset_span(body_wire: Mapping[str, Any]) -> tuple[int, int]:
    """The smallest and largest time offset (ms) of a non-empty body map."""
    groups = [s["t"] for s in body_wire[B_SIGNALS]]
    groups.append([e["t"] for e in body_wire[B_EVENTS]])
    groups.append(body_wire[B_GNSS]["t"])
    groups.append([us // US_PER_MS for us in body_wire[B_FRAMES]["t"]])
    groups.append([h["t"] for h in body_wire[B_HEALTH]])
    present = [g for g in groups if g]
    return min(map(min, present)), max(map(max, present))


def _moved(offsets: list[int], delta: int) -> list[int]:
    return offsets if delta == 0 else list(map(delta.__add__, offsets))


def _shift(body_wire: Mapping[str, Any], delta_ms: int) -> WireMap:
    """A copy of a body map with every time offset moved by ``delta_ms``."""
    return {
        B_SIGNALS: [{**s, "t": _moved(s["t"], delta_ms)} for s in body_wire[B_SIGNALS]],
        B_EVENTS: [{**e, "t": e["t"] + delta_ms} for e in body_wire[B_EVENTS]],
        B_GNSS: {**body_wire[B_GNSS], "t": _moved(body_wire[B_GNSS]["t"], delta_ms)},
        B_FRAMES: {
            **body_wire[B_FRAMES],
            "t": _moved(body_wire[B_FRAMES]["t"], delta_ms * US_PER_MS),
        },
        B_HEALTH: [{**h, "t": h["t"] + delta_ms} for h in body_wire[B_HEALTH]],
    }


# Close: join stored chunks into one body ---------------------------------------------------


def read_chunk(chunk: StagedChunk) -> WireMap:
    """The body map of a stored chunk. Raises MalformedPayload if its bytes are not what
    append wrote."""
    blob = chunk.blob
    if blob[: len(CHUNK_MARK)] != CHUNK_MARK:
        return _read_unframed(chunk)
    body_map = blob[_CRC_END:]
    if zlib.crc32(body_map) != int.from_bytes(blob[len(CHUNK_MARK) : _CRC_END], "big"):
        raise MalformedPayload(BAD_MSGPACK, "staged chunk damaged: checksum mismatch")
    body = msgpack.unpackb(body_map, raw=False)
    assert type(body) is dict  # what append packed, unchanged
    return body


def _read_unframed(chunk: StagedChunk) -> WireMap:
    """A chunk staged before chunks had a checksum: checked in full, as it was then."""
    body = wire.unpack_map(
        chunk.blob,
        max_str_len=MAX_TEXT_BYTES,
        max_bin_len=MAX_FRAME_DATA_BYTES,
        max_array_len=MAX_ARRAY_LEN,
        max_map_len=MAX_HEALTH_VALUES,
    )
    body_from_wire(body, chunk.first_ms, chunk.last_ms, MAX_ARRAY_LEN)
    return body


def _too_long(what: str, length: int) -> None:
    if length > MAX_ARRAY_LEN:
        raise PayloadTooLarge(
            TOO_LARGE_ELEMENT, f"{what}: {length} elements, limit {MAX_ARRAY_LEN}"
        )


def _joined(chunks: Sequence[StagedChunk], first_ms: int) -> WireMap:
    """One body map from chunks in staging order; series of one signal are joined, which
    keeps a 10-s batch to one series per signal (smaller and better compressed)."""
    series: dict[tuple[str, str], tuple[list[int], list[Any]]] = {}
    events: list[WireMap] = []
    health: list[WireMap] = []
    gnss: dict[str, list[Any]] = {k: [] for k in GNSS_COLUMNS}
    frames: dict[str, list[Any]] = {k: [] for k in FRAME_COLUMNS}
    bodies = [_shift(read_chunk(chunk), chunk.first_ms - first_ms) for chunk in chunks]
    if any(F_EVENT in body[B_FRAMES] for body in bodies):
        # Schema 2 for the whole batch: frames of chunks without links get nil.
        frames[F_EVENT] = []
    for body in bodies:
        for s in body[B_SIGNALS]:
            times, values = series.setdefault((s["name"], s["unit"]), ([], []))
            times.extend(s["t"])
            values.extend(s["v"])
        events.extend(body[B_EVENTS])
        health.extend(body[B_HEALTH])
        for columns, stored in ((gnss, body[B_GNSS]), (frames, body[B_FRAMES])):
            for key, column in columns.items():
                column.extend(stored[key] if key in stored else [None] * len(stored["t"]))
    return {
        B_SIGNALS: [
            {"name": name, "unit": unit, "t": times, "v": values}
            for (name, unit), (times, values) in series.items()
        ],
        B_EVENTS: events,
        B_GNSS: gnss,
        B_FRAMES: frames,
        B_HEALTH: health,
    }


def join_chunks(chunks: Sequence[StagedChunk]) -> ClosedBody:
    """The compressed body of one batch holding ``chunks`` (in staging order).

    Raises PayloadTooLarge when the batch would break a protocol limit (the caller then
    splits it), MalformedPayload when a stored chunk is not what append wrote."""
    first = min(c.first_ms for c in chunks)
    body = _joined(chunks, first)
    for kind in (B_SIGNALS, B_EVENTS, B_HEALTH):
        _too_long(kind, len(body[kind]))
    for s in body[B_SIGNALS]:
        _too_long("sig.t", len(s["t"]))
    _too_long(B_GNSS, len(body[B_GNSS]["t"]))
    _too_long(B_FRAMES, len(body[B_FRAMES]["t"]))
    data = wire.pack(body)
    if len(data) > MAX_BODY_BYTES:
        raise PayloadTooLarge(
            TOO_LARGE_DECOMPRESSED, f"body of {len(data)} bytes, limit {MAX_BODY_BYTES}"
        )
    frame = compression.compress(data)
    if len(frame) + ENVELOPE_OVERHEAD > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            TOO_LARGE_COMPRESSED,
            f"about {len(frame) + ENVELOPE_OVERHEAD} bytes, limit {MAX_PAYLOAD_BYTES}",
        )
    counts = RecordCounts(
        signal_samples=sum(len(s["t"]) for s in body[B_SIGNALS]),
        events=len(body[B_EVENTS]),
        gnss_fixes=len(body[B_GNSS]["t"]),
        raw_frames=len(body[B_FRAMES]["t"]),
        health=len(body[B_HEALTH]),
    )
    notice = any(e["type"] == EVICTION_NOTICE for e in body[B_EVENTS])
    version = EVIDENCE_SCHEMA_VERSION if F_EVENT in body[B_FRAMES] else SCHEMA_VERSION
    return ClosedBody(frame, first, max(c.last_ms for c in chunks), counts, notice, version)
