"""intake.SenderBudgets: a token bucket per sender, a pure core (``now`` is an argument)."""

from __future__ import annotations

import pytest

from cloud_collector.intake import SenderBudgets


def test_burst_then_rate_per_sender() -> None:
    b = SenderBudgets(rate_per_s=2.0, burst=3)
    assert [b.take("flood", 0.0) for _ in range(5)] == [True, True, True, False, False]
    # Another sender is not affected by the first one's empty bucket.
    assert b.take("honest", 0.0)
    # 2 tokens per second come back, never more than the burst.
    assert b.take("flood", 0.5)
    assert not b.take("flood", 0.5)
    assert [b.take("flood", 100.0) for _ in range(4)] == [True, True, True, False]


def test_clock_going_back_never_refills() -> None:
    b = SenderBudgets(rate_per_s=1.0, burst=1)
    assert b.take("s", 10.0)
    assert not b.take("s", 5.0)
    assert not b.take("s", 10.5)
    assert b.take("s", 11.0)


def test_remembered_senders_are_bounded() -> None:
    b = SenderBudgets(rate_per_s=1.0, burst=1, max_senders=2)
    for name in ("a", "b", "c"):
        assert b.take(name, 0.0)
    assert len(b) == 2
    assert b.take("a", 0.0)  # forgotten: starts again with a full bucket (one burst)


def test_invalid_budgets() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        SenderBudgets(rate_per_s=0, burst=1)
