"""The pure batching and eviction policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.batching import (
    PRIORITY_BULK,
    PRIORITY_EVENT,
    PRIORITY_HEALTH,
    BatchPolicy,
    Candidate,
    Chunk,
    choose_victims,
    plan_batches,
    should_close,
)

POLICY = BatchPolicy(max_records=100, max_bytes=1000)


def close(lane: str, oldest: int | None, count: int, nbytes: int, now: int) -> bool:
    return should_close(
        POLICY, lane, oldest_staged_ms=oldest, count=count, nbytes=nbytes, now_ms=now
    )


def test_nothing_staged_never_closes() -> None:
    assert not close("batch", None, 0, 0, 10**9)


@pytest.mark.parametrize(("lane", "age"), [("event", 1_000), ("batch", 10_000), ("health", 30_000)])
def test_each_lane_closes_at_its_age(lane: str, age: int) -> None:
    assert not close(lane, 5_000, 1, 10, 5_000 + age - 1)
    assert close(lane, 5_000, 1, 10, 5_000 + age)


def test_full_by_count_or_bytes_closes_at_once() -> None:
    assert close("batch", 5_000, 100, 10, 5_000)
    assert close("batch", 5_000, 1, 1000, 5_000)
    assert not close("batch", 5_000, 99, 999, 5_000)


def test_safety_events_are_urgent_and_sign_readings_are_not() -> None:
    policy = BatchPolicy()
    for kind in ("fcw", "pcw", "peds_in_dz", "harsh_braking", "overspeed", "ldw_left"):
        assert policy.is_urgent(kind)
    assert not policy.is_urgent("tsr_sign")
    assert not policy.is_urgent("wipers_on")


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_records"):
        BatchPolicy(max_records=0)


def test_plan_splits_by_count_and_bytes_in_order() -> None:
    chunks = [Chunk(1, 60, 100), Chunk(2, 30, 100), Chunk(3, 20, 100), Chunk(4, 5, 950)]
    assert plan_batches(POLICY, chunks) == [[1, 2], [3], [4]]
    assert plan_batches(POLICY, [Chunk(9, 500, 5000)]) == [[9]]  # oversize: alone
    assert plan_batches(POLICY, []) == []


candidates = st.lists(
    st.builds(
        Candidate,
        priority=st.sampled_from([PRIORITY_BULK, PRIORITY_HEALTH, PRIORITY_EVENT]),
        seq=st.integers(1, 10_000),
        nbytes=st.integers(1, 5_000),
    ),
    max_size=40,
    unique_by=lambda c: c.seq,
)


@given(candidates, st.integers(0, 100_000))
def test_eviction_order(rows: list[Candidate], need: int) -> None:
    victims = choose_victims(rows, need)
    total = sum(c.nbytes for c in rows)
    freed = sum(v.nbytes for v in victims)
    # Frees at least what is asked whenever that is possible, and no more candidates than
    # needed: without its last victim, the selection would not have been enough.
    assert freed >= min(need, total)
    if victims:
        assert freed - victims[-1].nbytes < need
    kept = [c for c in rows if c not in victims]
    for v in victims:
        for k in kept:
            # Never a higher priority while a lower one is kept (no event while bulk
            # exists), and oldest first within a priority.
            assert v.priority <= k.priority
            if v.priority == k.priority:
                assert v.seq < k.seq


def test_nothing_to_free_evicts_nothing() -> None:
    assert choose_victims([Candidate(0, 1, 10)], 0) == []
