"""msgpack ext types, the timestamp extension (type -1) included, are ``bad_msgpack``.

msgpack libraries decode type -1 into a timestamp object by themselves, without asking
the ext hook; PROTOCOL.md section 1 forbids every ext type, so a timestamp where a
``uint`` time belongs must not pass as a wrong-typed field.
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_collector.validate import Rejected, classify
from protocol import (
    MalformedPayload,
    ProtocolError,
    UnsupportedSchemaVersion,
    compression,
    decode_ack,
    decode_batch,
    decode_status,
    encode_ack,
    encode_status,
    peek_header,
    peek_identity,
)
from protocol.errors import BAD_MSGPACK
from tests.protocol import samples
from tests.protocol.golden_files import read
from tests.protocol.helpers import Wire, full_wire, split
from tests.support.examples import examples

GOLDEN = read("batch_v1_minimal")
GOLDEN_BODY = read("batch_v1_minimal_body")
GOLDEN_ID = samples.minimal_batch().header.identity
TOPIC = f"fleet/{GOLDEN_ID.fleet_id}/{GOLDEN_ID.vehicle_id}/batch"

# t0 = 1700000000000 as the golden vector writes it (uint 64), and the same instant as a
# timestamp 32 extension (fixext 4, type -1, seconds 1700000000).
T0_UINT = bytes.fromhex("a27430") + bytes.fromhex("cf0000018bcfe56800")
T0_TIMESTAMP = bytes.fromhex("a27430") + bytes.fromhex("d6ff") + struct.pack(">I", 1_700_000_000)
# The first series' sample times [0, 100, 200] in the golden body, and with a timestamp
# 64 extension (fixext 8, type -1) as the first element.
SIG_T_UINT = bytes.fromhex("a174930064ccc8")
SIG_T_TIMESTAMP = bytes.fromhex("a17493d7ff000000000000000064ccc8")


def _ext(code: int, data: bytes) -> bytes:
    """The raw msgpack encoding of ext ``code`` with ``data``, in its shortest form."""
    tag = struct.pack(">b", code)
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    if len(data) in fixed:
        return bytes([fixed[len(data)]]) + tag + data
    if len(data) < 1 << 8:
        return b"\xc7" + struct.pack(">B", len(data)) + tag + data
    if len(data) < 1 << 16:
        return b"\xc8" + struct.pack(">H", len(data)) + tag + data
    return b"\xc9" + struct.pack(">I", len(data)) + tag + data


# Every way to spell a timestamp (32, 64, 96 bit), a malformed one, and other ext types in
# every length class, including the forms msgpack-python special-cases.
EXTS = {
    "timestamp32": _ext(-1, bytes(4)),
    "timestamp64": _ext(-1, bytes(8)),
    "timestamp96": _ext(-1, bytes(12)),
    "timestamp ext8 form": b"\xc7\x04\xff" + bytes(4),
    "timestamp empty": _ext(-1, b""),
    "timestamp 3 bytes": _ext(-1, b"abc"),
    "type 5 fixext1": _ext(5, b"x"),
    "type 127 fixext16": _ext(127, bytes(16)),
    "type -128 ext8": _ext(-128, bytes(3)),
    "type 0 empty": _ext(0, b""),
    "type 5 ext16": _ext(5, bytes(300)),
    "type -1 ext32 as declared": b"\xc9\x00\x00\x00\x04\xff" + bytes(4),
}

# A bin value no valid payload contains; after packing it is swapped for raw ext bytes.
MARKER = b"\x00ext-goes-here\x00"
PACKED_MARKER = msgpack.packb(MARKER, use_bin_type=True)


def _swap_marker(packed: bytes, raw: bytes) -> bytes:
    assert packed.count(PACKED_MARKER) == 1
    return packed.replace(PACKED_MARKER, raw)


def _envelope_with(header: Wire, body: bytes) -> bytes:
    return msgpack.packb({**header, "body": compression.compress(body)}, use_bin_type=True)


def _reason(decode: Callable[[bytes], object], payload: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        decode(payload)
    return caught.value


def test_golden_with_timestamp_t0_is_bad_msgpack() -> None:
    assert GOLDEN.count(T0_UINT) == 1
    payload = GOLDEN.replace(T0_UINT, T0_TIMESTAMP)
    for decode in (decode_batch, peek_header, peek_identity):
        error = _reason(decode, payload)
        assert isinstance(error, MalformedPayload)
        assert error.reason == BAD_MSGPACK
        # The envelope could not be read, so there is no identity to acknowledge.
        assert error.identity is None
    outcome = classify(TOPIC, payload)
    assert outcome == Rejected(BAD_MSGPACK, GOLDEN_ID.fleet_id, GOLDEN_ID.vehicle_id, None)


def test_golden_with_timestamp_in_the_body_is_bad_msgpack() -> None:
    assert GOLDEN_BODY.count(SIG_T_UINT) == 1
    header, _ = split(GOLDEN)
    payload = _envelope_with(header, GOLDEN_BODY.replace(SIG_T_UINT, SIG_T_TIMESTAMP))
    # The header is valid: only the body is.
    assert peek_header(payload).identity == GOLDEN_ID
    error = _reason(decode_batch, payload)
    assert error.reason == BAD_MSGPACK
    assert error.identity == GOLDEN_ID
    # Quarantined under its identity, so it is acknowledged end to end.
    outcome = classify(TOPIC, payload)
    assert outcome == Rejected(BAD_MSGPACK, GOLDEN_ID.fleet_id, GOLDEN_ID.vehicle_id, GOLDEN_ID)


@pytest.mark.parametrize("raw", EXTS.values(), ids=EXTS.keys())
@pytest.mark.parametrize("key", ["seq", "t0", "sent", "body"])
def test_ext_in_the_envelope(key: str, raw: bytes) -> None:
    header, body = full_wire()
    packed = msgpack.packb(
        {**header, "body": compression.compress(msgpack.packb(body)), key: MARKER},
        use_bin_type=True,
    )
    error = _reason(decode_batch, _swap_marker(packed, raw))
    assert error.reason == BAD_MSGPACK
    assert error.identity is None


def _body_places(body: Wire) -> dict[str, Wire]:
    """Where a body can hold a value: in an array, in a map, in a nested map."""
    return {
        "sig.v": body["sig"][0]["v"],
        "evt.attrs": body["evt"][0]["attrs"],
        "evt.fix": body["evt"][0]["fix"],
        "hl.values": body["hl"][0]["values"],
        "frm.data": body["frm"]["data"],
    }


@pytest.mark.parametrize("raw", EXTS.values(), ids=EXTS.keys())
@pytest.mark.parametrize("place", ["sig.v", "evt.attrs", "evt.fix", "hl.values", "frm.data"])
def test_ext_in_the_body(place: str, raw: bytes) -> None:
    header, original = full_wire()
    body = copy.deepcopy(original)
    target = _body_places(body)[place]
    if isinstance(target, list):
        target[0] = MARKER
    else:
        target[next(iter(target))] = MARKER
    error = _reason(decode_batch, _envelope_with(header, _swap_marker(msgpack.packb(body), raw)))
    assert error.reason == BAD_MSGPACK
    assert error.identity is not None


@pytest.mark.parametrize("raw", EXTS.values(), ids=EXTS.keys())
def test_ext_in_ack_and_status(raw: bytes) -> None:
    controls: list[tuple[bytes, Callable[[bytes], object]]] = [
        (encode_ack(samples.ack()), decode_ack),
        (encode_status(samples.status_online()), decode_status),
    ]
    for encoded, decode in controls:
        fields = msgpack.unpackb(encoded, raw=False)
        packed = msgpack.packb({**fields, "t": MARKER}, use_bin_type=True)
        assert _reason(decode, _swap_marker(packed, raw)).reason == BAD_MSGPACK
    # A whole payload that is one ext value, not a map.
    assert _reason(decode_status, raw).reason == BAD_MSGPACK


@settings(max_examples=examples(200), deadline=None)
@given(
    st.integers(-128, 127),
    st.binary(max_size=40),
    st.booleans(),
    st.data(),
)
def test_any_ext_anywhere(code: int, data: bytes, in_body: bool, draw: st.DataObject) -> None:
    header, original = full_wire()
    raw = _ext(code, data)
    if in_body:
        body = copy.deepcopy(original)
        place = draw.draw(st.sampled_from(sorted(_body_places(body))))
        target = _body_places(body)[place]
        if isinstance(target, list):
            target[draw.draw(st.integers(0, len(target) - 1))] = MARKER
        else:
            target[draw.draw(st.sampled_from(sorted(target)))] = MARKER
        payload = _envelope_with(header, _swap_marker(msgpack.packb(body), raw))
    else:
        key = draw.draw(st.sampled_from(sorted(header)))
        packed = msgpack.packb(
            {**header, "body": compression.compress(msgpack.packb(original)), key: MARKER},
            use_bin_type=True,
        )
        payload = _swap_marker(packed, raw)
    assert _reason(decode_batch, payload).reason == BAD_MSGPACK


def test_unknown_version_wins_over_a_missing_body() -> None:
    # A later version may drop or rename every non-stable key, ``body`` included
    # (section 3.2): its version must be recognised before schema 1's keys are looked at.
    header, _ = full_wire()
    payload = msgpack.packb({**header, "v": 3}, use_bin_type=True)
    for decode in (decode_batch, peek_header):
        error = _reason(decode, payload)
        assert isinstance(error, UnsupportedSchemaVersion)
        assert error.identity is not None
        assert error.identity.schema_version == 3
    with_text_body = msgpack.packb({**header, "v": 3, "body": "text"}, use_bin_type=True)
    assert isinstance(_reason(decode_batch, with_text_body), UnsupportedSchemaVersion)
