"""The pure batching and eviction policy."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.batching import (
    CAUSE_CAP,
    CAUSE_SPACE,
    EVICTED_FOR_SPACE,
    PRIORITY_BULK,
    PRIORITY_EVENT,
    PRIORITY_HEALTH,
    BatchPolicy,
    Candidate,
    Chunk,
    Lost,
    choose_victims,
    eviction_counters,
    eviction_notices,
    groups_to_close,
    lane_bodies,
    plan_batches,
    should_close,
    split_on_failure,
)
from protocol.body import Body
from protocol.notices import MAX_NOTICE_SEQS, noticed_seqs
from protocol.records import Event, Health, SignalSeries
from protocol.topics import Channel

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


sizes = st.lists(st.integers(1, 3_000), max_size=60)


@given(sizes, st.integers(1, 2_000))
def test_split_on_failure_keeps_every_item_in_order_within_the_limit(
    items: list[int], limit: int
) -> None:
    tried: list[int] = []

    def attempt(group: Sequence[int]) -> int | None:
        tried.append(len(group))
        return sum(group) if sum(group) <= limit else None

    done = split_on_failure(items, attempt)
    assert [item for group, _ in done for item in group] == items  # in order, none lost
    for group, result in done:
        if result is None:  # only a single item too large by itself is given up
            assert len(group) == 1
            assert group[0] > limit
        else:
            assert result == sum(group) <= limit
    assert len(tried) <= 2 * len(items)  # halving: each item is in O(log n) attempts


@given(st.lists(st.tuples(st.integers(1, 150), st.integers(1, 1500)), max_size=60))
def test_plan_batches_keeps_every_chunk_in_order_within_the_limits(
    rows: list[tuple[int, int]],
) -> None:
    chunks = [Chunk(i, count, nbytes) for i, (count, nbytes) in enumerate(rows)]
    groups = plan_batches(POLICY, chunks)
    assert [i for group in groups for i in group] == list(range(len(rows)))
    for group in groups:
        if len(group) > 1:
            assert sum(rows[i][0] for i in group) <= POLICY.max_records
            assert sum(rows[i][1] for i in group) <= POLICY.max_bytes


def test_groups_close_by_age_by_size_or_when_forced() -> None:
    age = POLICY.bulk_max_age_ms
    small = [Chunk(1, 10, 100), Chunk(2, 10, 100)]

    def groups(chunks: list[Chunk], waited: int, force: bool = False) -> list[list[int]]:
        return groups_to_close(
            POLICY, Channel.BATCH, chunks, oldest_staged_ms=0, now_ms=waited, force=force
        )

    assert groups(small, age - 1) == []
    assert groups(small, age) == [[1, 2]]
    assert groups(small, 0, force=True) == [[1, 2]]
    assert groups([], age, force=True) == []
    # Full by bytes before its age: the full batch closes, the rest keeps collecting.
    big = [Chunk(1, 10, 600), Chunk(2, 10, 400), Chunk(3, 10, 100)]
    assert groups(big, 0) == [[1, 2]]
    assert groups(big, age) == [[1, 2], [3]]


def test_lanes_urgent_events_health_and_the_rest() -> None:
    fcw = Event("fcw", 1, None, None, None, {})
    sign = Event("tsr_sign", 2, None, None, None, {})
    series = SignalSeries("speed", (1,), (2.0,), "km/h")
    snapshot = Health(3, {"cpu": 0.5})
    lanes = lane_bodies(POLICY, Body(signals=(series,), events=(fcw, sign), health=(snapshot,)))
    assert lanes == {
        Channel.EVENT: Body(events=(fcw,)),
        Channel.HEALTH: Body(health=(snapshot,)),
        Channel.BATCH: Body(signals=(series,), events=(sign,)),
    }


@given(
    st.lists(
        st.tuples(st.integers(1, 3), st.integers(1, 30_000), st.sampled_from("ab")),
        unique_by=lambda x: (x[0], x[1]),
        max_size=50,
    )
)
def test_eviction_notices_name_every_lost_seq_once(lost: list[tuple[int, int, str]]) -> None:
    items = [Lost(epoch, seq, 1_000 + seq, 2, cause) for epoch, seq, cause in lost]
    named: list[tuple[int, int, str]] = []
    for notice in eviction_notices(items):
        span = noticed_seqs(notice)
        assert span is not None
        epoch, first, last = span
        assert last - first < MAX_NOTICE_SEQS
        assert notice.attrs["records"] == 2 * (last - first + 1)
        assert notice.time_ms == 1_000 + last
        named += [(epoch, seq, str(notice.attrs["cause"])) for seq in range(first, last + 1)]
    assert sorted(named) == sorted(lost)


def test_eviction_counters_by_priority_and_for_space() -> None:
    victims = [Candidate(PRIORITY_BULK, 1, 10), Candidate(PRIORITY_BULK, 2, 10),
               Candidate(PRIORITY_HEALTH, 3, 10)]  # fmt: skip
    assert eviction_counters(victims, CAUSE_CAP) == {"evicted_bulk": 2, "evicted_health": 1}
    space = eviction_counters(victims, CAUSE_SPACE)
    assert space[EVICTED_FOR_SPACE] == 3
    assert eviction_counters([], CAUSE_SPACE) == {}
