"""Schema 2: raw frames linked to the event they are evidence for (``frm.ev``)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import Batch, RawFrame, decode_batch, encode_batch
from protocol.errors import InvalidField, ProtocolError
from tests.protocol import samples
from tests.protocol.helpers import join, split
from tests.protocol.strategies import abs_times


def test_a_batch_without_links_stays_version_1() -> None:
    assert samples.full_batch().header.schema_version == 1
    assert split(encode_batch(samples.full_batch()))[0]["v"] == 1


def test_a_batch_with_a_linked_frame_is_version_2() -> None:
    header, body = split(encode_batch(samples.evidence_batch()))
    assert header["v"] == 2
    event_ms = samples.T0 + 30_000
    assert body["frm"]["ev"] == [event_ms, event_ms, None]


def test_the_link_survives_the_round_trip() -> None:
    decoded = decode_batch(encode_batch(samples.evidence_batch()))
    assert [f.event_ms for f in decoded.frames] == [samples.T0 + 30_000] * 2 + [None]


def test_version_1_body_with_a_link_column_is_rejected() -> None:
    header, body = split(encode_batch(samples.full_batch()))
    body["frm"]["ev"] = [None] * len(body["frm"]["t"])
    with pytest.raises(ProtocolError) as caught:
        decode_batch(join(header, body))
    assert caught.value.reason == "unknown_field"


def test_version_2_body_without_the_link_column_is_rejected() -> None:
    header, body = split(encode_batch(samples.evidence_batch()))
    del body["frm"]["ev"]
    with pytest.raises(InvalidField) as caught:
        decode_batch(join(header, body))
    assert caught.value.reason == "bad_field:frm.ev"


@pytest.mark.parametrize(
    ("links", "reason"),
    [
        ([1, 2], "bad_field:frm.ev"),  # shorter than the other columns
        ([-1, None, None], "bad_field:frm.ev"),
        ([2**53, None, None], "bad_field:frm.ev"),
        (["x", None, None], "bad_field:frm.ev"),
    ],
)
def test_bad_links_are_named(links: list[object], reason: str) -> None:
    header, body = split(encode_batch(samples.evidence_batch()))
    body["frm"]["ev"] = links
    with pytest.raises(InvalidField) as caught:
        decode_batch(join(header, body))
    assert caught.value.reason == reason


def test_version_1_header_cannot_carry_a_link() -> None:
    batch = samples.evidence_batch()
    header = dataclasses.replace(batch.header, schema_version=1)
    with pytest.raises(InvalidField) as caught:
        encode_batch(dataclasses.replace(batch, header=header))
    assert caught.value.reason == "bad_field:frm.ev"


@given(st.lists(st.none() | abs_times, min_size=1, max_size=20))
def test_any_links_round_trip(links: list[int | None]) -> None:
    frames = [
        RawFrame("camera", samples.T0 * 1000 + i, 0x700, bytes([i % 256]), event_ms=link)
        for i, link in enumerate(links)
    ]
    batch = Batch.build(
        fleet_id="demo", vehicle_id="taxi-001", epoch=1, seq=1, sent_ms=samples.T0, frames=frames
    )
    assert batch.header.schema_version == (1 if all(x is None for x in links) else 2)
    assert decode_batch(encode_batch(batch)) == batch
