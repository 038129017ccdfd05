"""Batch payloads: encode a Batch to bytes, and peek at or decode received bytes.

Decoding checks in order of cost, so hostile input is rejected as cheaply as possible:
payload size, envelope msgpack (bounded by the payload size), stable identity, schema
version, the rest of the header, then the body (bounded decompression, bounded msgpack,
every field) and finally that the body agrees with the header.
"""

from __future__ import annotations

from protocol import checks, compression, wire
from protocol.batch import Batch
from protocol.body import body_from_wire, body_to_wire
from protocol.envelope import (
    K_BODY,
    K_EVENTS,
    K_GNSS_FIXES,
    K_HEALTH,
    K_RAW_FRAMES,
    K_SIGNAL_SAMPLES,
    SUPPORTED_VERSIONS,
    BatchHeader,
    BatchIdentity,
    RecordCounts,
    header_from_wire,
    header_to_wire,
    identity_from_wire,
)
from protocol.errors import (
    TOO_LARGE_COMPRESSED,
    TOO_LARGE_DECOMPRESSED,
    PayloadTooLarge,
    ProtocolError,
    UnsupportedSchemaVersion,
)
from protocol.limits import (
    DEFAULT_LIMITS,
    MAX_FRAME_DATA_BYTES,
    MAX_HEALTH_VALUES,
    MAX_TEXT_BYTES,
    Limits,
)

Payload = bytes | bytearray | memoryview


def _envelope(payload: Payload, limits: Limits) -> dict[str, object]:
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
    size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
    if size > limits.max_payload_bytes:
        raise PayloadTooLarge(
            TOO_LARGE_COMPRESSED, f"{size} bytes, limit {limits.max_payload_bytes}"
        )
    data = bytes(payload)  # no copy for bytes
    # Nothing inside can be longer than the payload itself, so the payload size bounds the
    # envelope; it must not be stricter, or a future version's header could not be read.
    bound = len(data)
    return wire.unpack_map(
        data, max_str_len=bound, max_bin_len=bound, max_array_len=bound, max_map_len=bound
    )


def peek_identity(payload: Payload, limits: Limits = DEFAULT_LIMITS) -> BatchIdentity:
    """The stable fields of a batch payload of any schema version, without decompressing.

    This is what a consumer needs to store, deduplicate and acknowledge a batch it cannot
    otherwise read.
    """
    return identity_from_wire(_envelope(payload, limits))


def _split(fields: dict[str, object]) -> tuple[dict[str, object], bytes]:
    if K_BODY not in fields:
        checks.fail(K_BODY, "missing")
    header = dict(fields)
    frame = header.pop(K_BODY)
    if type(frame) is not bytes:
        checks.fail(K_BODY, f"expected binary, got {type(frame).__name__}")
    return header, frame


def _header(payload: Payload, limits: Limits) -> tuple[BatchHeader, bytes, BatchIdentity]:
    fields = _envelope(payload, limits)
    identity = identity_from_wire(fields)
    if identity.schema_version not in SUPPORTED_VERSIONS:
        # Before ``body`` is looked at: a later version may not have it (PROTOCOL.md 3.2).
        raise UnsupportedSchemaVersion(identity.schema_version, identity=identity)
    try:
        header_fields, frame = _split(fields)
        return header_from_wire(header_fields), frame, identity
    except ProtocolError as exc:
        exc.identity = exc.identity or identity
        raise


def peek_header(payload: Payload, limits: Limits = DEFAULT_LIMITS) -> BatchHeader:
    """The checked header of a batch payload of a supported schema, without decompressing
    the body.

    Raises UnsupportedSchemaVersion (with ``identity``) for another schema version.
    """
    return _header(payload, limits)[0]


def _check_counts(header: RecordCounts, body: RecordCounts) -> None:
    for key, said, found in (
        (K_SIGNAL_SAMPLES, header.signal_samples, body.signal_samples),
        (K_EVENTS, header.events, body.events),
        (K_GNSS_FIXES, header.gnss_fixes, body.gnss_fixes),
        (K_RAW_FRAMES, header.raw_frames, body.raw_frames),
        (K_HEALTH, header.health, body.health),
    ):
        if said != found:
            checks.fail(key, f"header says {said}, body has {found}")


def decode_batch(payload: Payload, limits: Limits = DEFAULT_LIMITS) -> Batch:
    """Decode and fully check a batch payload.

    Raises a ProtocolError subclass for anything invalid; its ``identity`` is set whenever
    the stable header fields could be read.
    """
    header, frame, identity = _header(payload, limits)
    try:
        data = compression.decompress(frame, limits.max_body_bytes)
        body_wire = wire.unpack_map(
            data,
            max_str_len=MAX_TEXT_BYTES,
            max_bin_len=MAX_FRAME_DATA_BYTES,
            max_array_len=limits.max_array_len,
            max_map_len=MAX_HEALTH_VALUES,
        )
        body = body_from_wire(
            body_wire, header.first_ms, header.last_ms, limits.max_array_len, header.schema_version
        )
        _check_counts(header.counts, body.counts())
    except ProtocolError as exc:
        exc.identity = exc.identity or identity
        raise
    return Batch(header, *body)


def encode_batch(batch: Batch, level: int = compression.DEFAULT_LEVEL) -> bytes:
    """Encode ``batch``; the same checks as ``decode_batch`` run first, so this raises the
    same ProtocolError subclasses for anything a consumer would reject.

    The result depends only on ``batch`` and ``level``: equal batches give equal bytes.
    """
    header_wire = header_to_wire(batch.header)
    header = header_from_wire(header_wire)
    max_array_len = DEFAULT_LIMITS.max_array_len
    version = header.schema_version
    body_wire = body_to_wire(batch.body, header.first_ms, header.last_ms, max_array_len, version)
    body = body_from_wire(body_wire, header.first_ms, header.last_ms, max_array_len, version)
    _check_counts(header.counts, body.counts())
    data = wire.pack(body_wire)
    if len(data) > DEFAULT_LIMITS.max_body_bytes:
        raise PayloadTooLarge(
            TOO_LARGE_DECOMPRESSED,
            f"body of {len(data)} bytes, limit {DEFAULT_LIMITS.max_body_bytes}",
        )
    header_wire[K_BODY] = compression.compress(data, level)
    payload = wire.pack(header_wire)
    if len(payload) > DEFAULT_LIMITS.max_payload_bytes:
        raise PayloadTooLarge(
            TOO_LARGE_COMPRESSED,
            f"{len(payload)} bytes, limit {DEFAULT_LIMITS.max_payload_bytes}",
        )
    return payload
