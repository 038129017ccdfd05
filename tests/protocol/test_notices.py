"""Eviction notices: they survive the wire whole, and a consumer reads only well-formed ones."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol import Batch, decode_batch, encode_batch, eviction_notice
from protocol.notices import MAX_NOTICE_SEQS, noticed_seqs
from protocol.records import Event

T = 1_700_000_000_000


def test_a_notice_round_trips_through_a_batch() -> None:
    notice = eviction_notice(
        epoch=2**64 - 1, first_seq=3, last_seq=9, time_ms=T, records=70, cause="evicted_bulk"
    )
    batch = Batch.build(fleet_id="f", vehicle_id="v", epoch=5, seq=10, sent_ms=T, events=[notice])
    (back,) = decode_batch(encode_batch(batch)).events
    assert noticed_seqs(back) == (2**64 - 1, 3, 9)
    assert back.attrs["records"] == 70


def test_ordinary_events_are_not_notices() -> None:
    assert noticed_seqs(Event("fcw", T, None, None, None, {"first_seq": 1})) is None


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=25)
)


@given(st.dictionaries(st.sampled_from(["epoch", "first_seq", "last_seq", "x"]), scalars))
def test_malformed_notices_are_ignored_not_raised(attrs: dict[str, object]) -> None:
    result = noticed_seqs(Event("outbox_evicted", T, None, None, None, attrs))  # type: ignore[arg-type]
    if result is not None:
        epoch, first, last = result
        assert 0 <= epoch < 2**64
        assert 1 <= first <= last < first + MAX_NOTICE_SEQS


def test_runs_too_long_or_reversed_are_ignored() -> None:
    def notice(first: int, last: int) -> Event:
        return Event("outbox_evicted", T, None, None, None,
                     {"epoch": "7", "first_seq": first, "last_seq": last})  # fmt: skip

    assert noticed_seqs(notice(1, MAX_NOTICE_SEQS)) == (7, 1, MAX_NOTICE_SEQS)
    assert noticed_seqs(notice(1, MAX_NOTICE_SEQS + 1)) is None
    assert noticed_seqs(notice(5, 4)) is None
    assert noticed_seqs(notice(0, 4)) is None
