"""Sample thinning policies."""

from __future__ import annotations

from collections.abc import Sequence

from edge_agent.thin import SamplePolicy, Thinner


def run(
    policy: SamplePolicy, samples: Sequence[tuple[int, float | int | None]]
) -> list[tuple[int, object]]:
    thinner = Thinner([policy])
    for t, v in samples:
        thinner.feed(policy.message, {policy.field: v}, t)
    series = thinner.drain()
    assert thinner.drain() == []
    return list(zip(series[0].times_ms, series[0].values, strict=True)) if series else []


def test_deadband_keeps_only_real_changes() -> None:
    p = SamplePolicy("M.s", deadband=1.0)
    got = run(p, [(0, 10.0), (10, 10.5), (20, 11.0), (30, 11.2), (40, 12.1), (50, 12.3)])
    assert got == [(0, 10.0), (30, 11.2), (50, 12.3)]


def test_min_interval_delays_a_change_until_the_next_frame_after_it() -> None:
    p = SamplePolicy("M.s", min_interval_ms=100)
    got = run(p, [(0, 1), (50, 2), (90, 2), (110, 2), (120, 3)])
    assert got == [(0, 1), (110, 2)]


def test_max_interval_repeats_a_steady_value() -> None:
    p = SamplePolicy("M.s", max_interval_ms=1000)
    got = run(p, [(t, 5) for t in range(0, 2600, 100)])
    assert got == [(0, 5), (1000, 5), (2000, 5)]


def test_becoming_invalid_and_valid_again_is_a_change() -> None:
    p = SamplePolicy("M.s", deadband=100.0)
    got = run(p, [(0, 1.0), (10, None), (20, None), (30, 1.0)])
    assert got == [(0, 1.0), (10, None), (30, 1.0)]


def test_absent_signal_and_other_messages_are_ignored() -> None:
    thinner = Thinner([SamplePolicy("M.s"), SamplePolicy("derived")])
    thinner.feed("M", {"other": 1}, 0)
    thinner.feed("N", {"s": 1}, 0)
    assert thinner.pending() == 0
    thinner.offer("derived", 3.5, 10)
    thinner.offer("unknown", 1, 10)
    (series,) = thinner.drain()
    assert (series.name, series.times_ms, series.values) == ("derived", (10,), (3.5,))


def test_full_rate_bus_is_thinned_hard() -> None:
    # 100 Hz noisy signal for a minute -> a handful of samples per second at most
    p = SamplePolicy("M.s", deadband=1.0, min_interval_ms=500, max_interval_ms=10_000)
    samples = [(t * 10, 20.0 + (t % 7) * 0.1) for t in range(6000)]
    got = run(p, samples)
    assert 6 <= len(got) <= 7
