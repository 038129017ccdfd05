"""Property tests: every valid batch survives encoding, and encoding is canonical."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import (
    Batch,
    decode_batch,
    encode_batch,
    peek_header,
    peek_identity,
)
from tests.protocol.strategies import batches
from tests.support.examples import examples

SETTINGS = settings(
    max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _same(a: object, b: object) -> bool:
    # Equality that also tells -0.0 from 0.0 and int from float, which == does not.
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and math.copysign(1, a) == math.copysign(1, b) and a == b  # type: ignore[arg-type]
    return type(a) is type(b) and a == b


@SETTINGS
@given(batches())
def test_decode_inverts_encode(batch: Batch) -> None:
    payload = encode_batch(batch)
    assert decode_batch(payload) == batch
    assert peek_header(payload) == batch.header
    assert peek_identity(payload) == batch.header.identity


@SETTINGS
@given(batches())
def test_encoding_is_canonical(batch: Batch) -> None:
    payload = encode_batch(batch)
    assert encode_batch(decode_batch(payload)) == payload


@SETTINGS
@given(batches())
def test_values_keep_their_exact_type(batch: Batch) -> None:
    decoded = decode_batch(encode_batch(batch))
    for ours, theirs in zip(batch.signals, decoded.signals, strict=True):
        assert all(map(_same, ours.values, theirs.values))
    for ours_fix, theirs_fix in zip(batch.gnss, decoded.gnss, strict=True):
        assert _same(ours_fix.lat, theirs_fix.lat)
        assert _same(ours_fix.speed_mps, theirs_fix.speed_mps)


@SETTINGS
@given(batches(), st.sampled_from([1, 3, 9, 19]))
def test_any_level_decodes(batch: Batch, level: int) -> None:
    assert decode_batch(encode_batch(batch, level=level)) == batch
