"""Local batch numbers and the (epoch, seq) they carry, without SQLite."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.epochs import local_number, local_span, wire_id

# Per epoch: (batches issued, gap of local numbers left unused after them).
tables = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 5)), min_size=1, max_size=5).flatmap(
    lambda sizes: st.tuples(
        st.just(sizes),
        st.lists(st.integers(1, 2**64 - 1), min_size=len(sizes), max_size=len(sizes), unique=True),
    )
)


@given(tables, st.integers(1, 10**6))
def test_every_issued_seq_maps_to_one_local_number_and_back(
    table: tuple[list[tuple[int, int]], list[int]], start: int
) -> None:
    sizes, ids = table
    epochs: list[tuple[int, int]] = []
    first = start
    for (issued, gap), epoch in zip(sizes, ids, strict=True):
        epochs.append((first, epoch))
        first += issued + gap
    next_seq = sizes[-1][0] + 1  # the current epoch's batches end at next_seq
    seen: set[int] = set()
    total = 0
    for i, ((issued, gap), epoch) in enumerate(zip(sizes, ids, strict=True)):
        current = i + 1 == len(sizes)
        held = issued if current else issued + gap  # earlier epochs end where the next starts
        total += held
        for seq in range(1, held + 1):
            local = local_number(epochs, next_seq, epoch, seq)
            assert local is not None
            assert wire_id(epochs, local) == (epoch, seq)
            seen.add(local)
        assert local_number(epochs, next_seq, epoch, held + 1) is None
        assert local_number(epochs, next_seq, epoch, 0) is None
        span = local_span(epochs, next_seq, epoch)
        assert span == (epochs[i][0], epochs[i][0] + held)
    assert len(seen) == total  # no two (epoch, seq) share a local number
    unknown = max(ids) + 1 if max(ids) < 2**64 - 1 else min(ids) - 1
    assert local_span(epochs, next_seq, unknown) is None
