"""The shared reconnect backoff: capped, exponential, fully jittered."""

from __future__ import annotations

import random

import pytest

from daemon_kit.backoff import Backoff


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    b = Backoff(0.5, 8.0, lambda: 0.999999)
    delays = [b.next_delay_s() for _ in range(8)]
    assert delays[:4] == pytest.approx([0.5, 1.0, 2.0, 4.0], rel=1e-5)
    assert max(delays) == pytest.approx(8.0, rel=1e-5)  # capped
    assert Backoff(0.5, 8.0, lambda: 0.0).next_delay_s() == 0.0  # full jitter reaches 0
    b.reset()
    assert b.next_delay_s() == pytest.approx(0.5, rel=1e-5)


def test_backoff_survives_many_failures() -> None:
    b = Backoff(1.0, 60.0, lambda: 0.5)
    for _ in range(5000):
        assert b.next_delay_s() <= 60.0


def test_500_taxis_do_not_reconnect_in_the_same_second() -> None:
    rng = random.Random(7)
    seconds: list[int] = []
    for _ in range(500):
        b = Backoff(1.0, 120.0, rng.random)
        for _ in range(6):  # six failed attempts in the tunnel
            b.next_delay_s()
        seconds.append(int(b.next_delay_s()))
    # Spread over the 64-s window: no second holds more than a few percent of the fleet.
    assert max(seconds.count(s) for s in set(seconds)) < 25
    assert len(set(seconds)) > 50


def test_backoff_rejects_a_bad_window() -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(2.0, 1.0, random.random)
