"""Retention and time partitions as policy (``store.retention``, pure), and the
``[retention]`` settings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cloud_collector.config import parse_config
from cloud_collector.errors import ConfigError
from cloud_collector.store.retention import (
    DAY_MS,
    EARLIEST_PARTITION_MS,
    EXPIRING,
    PERIODS_AHEAD,
    WEEK_MS,
    Delete,
    Partition,
    cutoffs,
    period_start,
    plan,
    wanted_periods,
)

NOW = 1_796_221_303_089  # Wednesday 2026-12-02 14:21:43.089 UTC
EVENTS, SAMPLES = EXPIRING["events"][0], EXPIRING["samples"][0]


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def test_periods_are_utc_days_and_iso_weeks() -> None:
    day = period_start(NOW, DAY_MS)
    assert _utc(day) == datetime(2026, 12, 2, tzinfo=UTC)
    week = period_start(NOW, WEEK_MS)
    assert _utc(week) == datetime(2026, 11, 30, tzinfo=UTC)  # the Monday
    assert period_start(week, WEEK_MS) == week
    assert period_start(week - 1, WEEK_MS) == week - WEEK_MS
    assert _utc(period_start(5, WEEK_MS)) == datetime(1969, 12, 29, tzinfo=UTC)


def test_cutoffs_per_table_and_zero_keeps_for_ever() -> None:
    cuts = cutoffs(NOW, {"samples": 30, "events": 365, "health": 0})
    assert cuts == {
        "samples": NOW - 30 * DAY_MS,
        "events": NOW - 365 * DAY_MS,
        "evidence_frames": NOW - 365 * DAY_MS,  # frames go with their event
    }
    with pytest.raises(ValueError, match="'trips'"):
        cutoffs(NOW, {"trips": 1})


def _samples(start: int, n: int) -> list[Partition]:
    return [
        Partition("samples", f"samples_{k}", start + k * DAY_MS, start + (k + 1) * DAY_MS)
        for k in range(n)
    ]


def test_plan_drops_whole_partitions_and_deletes_in_the_straddling_one() -> None:
    cut = NOW - 30 * DAY_MS
    first = period_start(cut, DAY_MS) - 2 * DAY_MS
    parts = [Partition("samples", "samples_default", None, None), *_samples(first, 5)]
    todo = plan(NOW, {"samples": 30}, parts)
    # The two days before the cut's day end at or before it: dropped.
    assert [p.name for p in todo.drop] == ["samples_0", "samples_1"]
    # The cut's own day straddles it; the default partition may hold anything.
    assert set(todo.delete) == {
        Delete("samples", "samples_default", "time_ms", cut),
        Delete("samples", "samples_2", "time_ms", cut),
    }


def test_a_partition_ending_exactly_at_the_cut_is_dropped_one_starting_there_kept() -> None:
    cut = period_start(NOW, DAY_MS) - 30 * DAY_MS
    now = cut + 30 * DAY_MS
    todo = plan(now, {"samples": 30}, _samples(cut - DAY_MS, 2))
    assert [p.name for p in todo.drop] == ["samples_0"]
    assert todo.delete == ()


def test_unpartitioned_stores_and_tables_delete_by_time() -> None:
    todo = plan(NOW, {"samples": 30, "quarantine": 90, "events": 0}, None)
    assert todo.drop == ()
    assert set(todo.delete) == {
        Delete("samples", "samples", "time_ms", NOW - 30 * DAY_MS),
        Delete("quarantine", "quarantine", "received_ms", NOW - 90 * DAY_MS),
    }
    # Quarantine is never partitioned, even on a partitioned store.
    todo = plan(NOW, {"quarantine": 90}, [Partition("samples", "samples_default", None, None)])
    assert todo.delete == (Delete("quarantine", "quarantine", "received_ms", NOW - 90 * DAY_MS),)


def test_wanted_periods_around_now_and_where_rows_wait_in_the_default() -> None:
    week = period_start(NOW, WEEK_MS)
    assert wanted_periods(NOW, EVENTS, None) == [
        week + k * WEEK_MS for k in range(-1, PERIODS_AHEAD + 1)
    ]
    late = NOW - 10 * WEEK_MS
    clocks = [late, 5, NOW + 600 * WEEK_MS]  # a backlog, a 1970 clock, a 2038 clock
    assert wanted_periods(NOW, EVENTS, None, clocks)[0] == period_start(late, WEEK_MS)
    assert len(wanted_periods(NOW, EVENTS, None, clocks)) == PERIODS_AHEAD + 3
    # Nothing wholly before the retention cut, nor before 2020.
    cut = NOW - 3 * DAY_MS
    assert wanted_periods(NOW, SAMPLES, cut, [late, cut - 1])[0] == period_start(cut, DAY_MS)
    assert wanted_periods(NOW, SAMPLES, cut, [late])[0] == period_start(NOW, DAY_MS) - DAY_MS
    assert min(wanted_periods(EARLIEST_PARTITION_MS + DAY_MS, SAMPLES, None)) == (
        EARLIEST_PARTITION_MS
    )
    assert wanted_periods(NOW, EXPIRING["quarantine"][0], None) == []


def test_retention_defaults() -> None:
    cfg = parse_config({}, "c.toml").retention
    assert cfg.keep_days() == {
        "samples": 30, "gnss": 30, "events": 365, "health": 30, "quarantine": 90,
        "cell_vehicles": 7,
    }  # fmt: skip
    assert set(cfg.keep_days()) == set(EXPIRING)
    # What ingest is told: how long a cell-hour's vehicles are kept (0: for ever, None).
    assert cfg.contributions_ms() == 7 * DAY_MS
    assert cfg.model_copy(update={"cell_vehicles_days": 0}).contributions_ms() is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"samples_days": -1}, "key 'retention.samples_days'"),
        ({"events_days": "1y"}, "key 'retention.events_days'"),
        ({"interval_s": 0}, "key 'retention.interval_s'"),
        ({"batch_rows": 0}, "key 'retention.batch_rows'"),
        ({"cell_vehicles_days": -1}, "key 'retention.cell_vehicles_days'"),
        ({"sample_days": 3}, "key 'retention.sample_days': unknown key (did you mean"),
    ],
)
def test_a_bad_retention_setting_names_its_key(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=r"^c\.toml: " + message.replace("(", r"\(")):
        parse_config({"retention": section}, "c.toml")
