"""Garbage in: whatever the bytes, decoding returns a value or raises a ProtocolError.

Never any other exception: a collector must be able to quarantine every payload under a
reason instead of crashing on it.
"""

from __future__ import annotations

import random
import re
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    Batch,
    ProtocolError,
    decode_ack,
    decode_batch,
    decode_status,
    encode_batch,
    peek_header,
    peek_identity,
)
from tests.protocol import samples
from tests.protocol.helpers import full_wire, join
from tests.protocol.strategies import batches
from tests.support.examples import examples

DECODERS = (decode_batch, peek_header, peek_identity, decode_ack, decode_status)

# msgpack values of every type, nested: what a confused or hostile producer might send.
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


FIXED_REASONS = {
    "too_large_compressed",
    "too_large_decompressed",
    "too_large_payload",
    "too_large_element",
    "bad_msgpack",
    "bad_zstd",
    "unknown_version",
    "unknown_field",
}
# A field path is made of the schema's key names only, never of payload data.
FIELD_REASON = re.compile(r"bad_field:[a-z0-9]+(\.[a-z0-9]+)*")


def _decode_all(data: bytes) -> None:
    reasons: list[str] = []
    for decode in DECODERS:
        try:
            decode(data)
        except ProtocolError as exc:
            reasons.append(exc.reason)
    for reason in reasons:
        assert reason in FIXED_REASONS or FIELD_REASON.fullmatch(reason), reason


@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _decode_all(data)


@settings(max_examples=examples(200), deadline=None)
@given(msgpack_values)
def test_random_msgpack(value: object) -> None:
    _decode_all(msgpack.packb(value, use_bin_type=True))


@pytest.mark.parametrize(
    "batch", [samples.minimal_batch(), samples.full_batch()], ids=["minimal", "full"]
)
def test_every_truncation(batch: Batch) -> None:
    payload = encode_batch(batch)
    for cut in range(len(payload)):
        with pytest.raises(ProtocolError):
            decode_batch(payload[:cut])


@pytest.mark.parametrize(
    "batch", [samples.minimal_batch(), samples.full_batch()], ids=["minimal", "full"]
)
def test_every_bit_flip(batch: Batch) -> None:
    payload = encode_batch(batch)
    for position in range(len(payload) * 8):
        flipped = bytearray(payload)
        flipped[position // 8] ^= 1 << (position % 8)
        _decode_all(bytes(flipped))


@settings(max_examples=examples(100), deadline=None)
@given(batches(), st.randoms(use_true_random=False))
def test_damaged_random_batches(batch: Batch, rnd: random.Random) -> None:
    payload = bytearray(encode_batch(batch))
    for _ in range(rnd.randint(1, 8)):
        payload[rnd.randrange(len(payload))] = rnd.randrange(256)
    _decode_all(bytes(payload))
    _decode_all(bytes(payload[: rnd.randrange(len(payload))]))


def _paths(node: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


def _replace(root: Any, path: tuple[Any, ...], value: object) -> None:
    for step in path[:-1]:
        root = root[step]
    root[path[-1]] = value


HEADER, BODY = full_wire()
HEADER_PATHS = _paths(HEADER)
BODY_PATHS = _paths(BODY)


@settings(max_examples=examples(300), deadline=None)
@given(st.data(), msgpack_values)
def test_any_field_replaced_by_anything(data: st.DataObject, value: object) -> None:
    # Structure-aware fuzzing: well-formed msgpack and zstd, one field of a valid batch
    # replaced by an arbitrary value, so the field checks themselves get exercised.
    header, body = msgpack.unpackb(msgpack.packb((HEADER, BODY)), raw=False)
    in_body = data.draw(st.booleans())
    path = data.draw(st.sampled_from(BODY_PATHS if in_body else HEADER_PATHS))
    _replace(body if in_body else header, path, value)
    _decode_all(join(header, body))


@settings(max_examples=examples(150), deadline=None)
@given(msgpack_values)
def test_any_body_object(value: object) -> None:
    _decode_all(join(HEADER, value))
