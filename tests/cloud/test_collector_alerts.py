"""evaluate_alerts and derive: pure functions of state, latest health, now and thresholds."""

from __future__ import annotations

import calendar
import dataclasses

import pytest

from cloud_collector import alerts as al
from cloud_collector.alerts import (
    BACKLOG_AGE,
    CAMERA_FAILSAFE,
    CAMERA_TAMPER,
    CLOCK_OFFSET,
    CRITICAL,
    DATA_PLAN,
    OFFLINE,
    WARNING,
    Thresholds,
    derive,
    evaluate_alerts,
    month_span,
)
from cloud_collector.config import parse_config
from cloud_collector.errors import ConfigError
from cloud_collector.store.base import EpochSpan, HealthPoint, VehicleHealth, VehicleStatus
from protocol.records import Scalar

MIN = 60_000
# 2026-03-11T00:00:00Z: 10 of March's 31 days elapsed.
NOW = calendar.timegm((2026, 3, 11, 0, 0, 0, 0, 0, 0)) * 1000
T = Thresholds()


def status(**kw: object) -> VehicleStatus:
    base: dict[str, object] = {
        "vehicle": "taxi-1", "fleet": "demo", "online": True, "presence_ms": NOW - 60 * MIN,
        "last_seen_ms": NOW - 1000, "last_epoch": 7, "last_seq": 10, "lag_ms": 2500,
        "day": "2026-03-11", "batches_today": 10, "bytes_today": 30_000, "batches_total": 90,
        "bytes_total": 300_000, "records_total": 900, "duplicates": 10, "quarantined": 0,
    }  # fmt: skip
    base.update(kw)
    return VehicleStatus(**base)  # type: ignore[arg-type]


def state(
    *, month_bytes: int = 0, failsafe: bool = False, health: HealthPoint | None = None, **kw: object
) -> VehicleHealth:
    return VehicleHealth(
        status=status(**kw),
        latest_health=health,
        camera_failsafe=failsafe,
        seq_gaps={"7": 2, "9": 1},
        rx_day="2026-03-11",
        rx_bytes_today=12_345,
        rx_month="2026-03",
        rx_bytes_month=month_bytes,
    )


def hp(t: int = NOW - 5000, **values: Scalar) -> HealthPoint:
    return HealthPoint(time_ms=t, values=dict(values))


def kinds(s: VehicleHealth, now: int = NOW, th: Thresholds = T) -> list[str]:
    return [a.kind for a in evaluate_alerts(s, s.latest_health, now, th)]


def test_healthy_vehicle_has_no_alerts() -> None:
    h = hp(outbox_oldest_age_ms=1000, clock_offset_ms=12, camera_failsafe=False,
           camera_tamper=0, outbox_pending_batches=1)  # fmt: skip
    assert kinds(state(health=h)) == []
    assert kinds(state()) == []


def test_offline_after_threshold_strictly() -> None:
    at = state(online=False, presence_ms=NOW - 10 * MIN)
    assert kinds(at) == []  # exactly 10 min: not yet "longer than"
    over = state(online=False, presence_ms=NOW - 10 * MIN - 1)
    [alert] = evaluate_alerts(over, None, NOW, T)
    assert (alert.kind, alert.severity, alert.since_ms) == (OFFLINE, CRITICAL, NOW - 10 * MIN - 1)
    assert alert.vehicle == "taxi-1"
    assert alert.value == pytest.approx(600.001)
    assert "offline" in alert.message
    # Online, or no status message ever: never offline.
    assert kinds(state(online=True, presence_ms=NOW - 100 * MIN)) == []
    assert kinds(state(online=None, presence_ms=None)) == []
    # Configurable.
    assert kinds(over, th=Thresholds(offline_after_min=11)) == []


def test_backlog_age() -> None:
    limit = 30 * MIN
    assert kinds(state(health=hp(outbox_oldest_age_ms=limit))) == []
    h = hp(t=NOW - 1000, outbox_oldest_age_ms=limit + 60_000)
    [alert] = evaluate_alerts(state(health=h), h, NOW, T)
    assert (alert.kind, alert.severity, alert.value) == (BACKLOG_AGE, WARNING, 1860.0)
    # The oldest record became older than the threshold 60 s before the snapshot.
    assert alert.since_ms == NOW - 1000 - 60_000
    assert kinds(state(health=h), th=Thresholds(backlog_age_min=31)) == []
    # Not a number: no alert (and no crash).
    assert kinds(state(health=hp(outbox_oldest_age_ms="soon"))) == []
    assert kinds(state(health=hp(outbox_oldest_age_ms=True))) == []


@pytest.mark.parametrize("value", [True, 1, "on", "true"])
def test_camera_flags_from_health(value: Scalar) -> None:
    assert kinds(state(health=hp(camera_failsafe=value))) == [CAMERA_FAILSAFE]
    alerts = evaluate_alerts(state(), hp(camera_tamper=value), NOW, T)
    assert [(a.kind, a.severity, a.since_ms) for a in alerts] == [
        (CAMERA_TAMPER, CRITICAL, NOW - 5000)
    ]


def test_camera_failsafe_from_vehicle_data() -> None:
    [alert] = evaluate_alerts(state(failsafe=True), None, NOW, T)
    assert alert.kind == CAMERA_FAILSAFE
    assert "vehicle data" in alert.message
    assert kinds(state(health=hp(camera_failsafe=False, camera_tamper="off"))) == []


def test_clock_offset_both_signs() -> None:
    assert kinds(state(health=hp(clock_offset_ms=2000))) == []
    assert kinds(state(health=hp(clock_offset_ms=-2000))) == []
    assert kinds(state(health=hp(clock_offset_ms=2001))) == [CLOCK_OFFSET]
    [alert] = evaluate_alerts(state(), hp(clock_offset_ms=-2500.5), NOW, T)
    assert alert.value == -2500.5
    assert kinds(state(health=hp(clock_offset_ms=2001)), th=Thresholds(clock_offset_ms=5000)) == []
    assert kinds(state(health=hp(clock_offset_ms=float("nan")))) == []


def test_data_plan_projection() -> None:
    plan = T.data_plan_bytes_per_month
    # 10 of 31 days: projection = used * 3.1.
    on_course = plan * 10 // 31
    assert kinds(state(month_bytes=on_course)) == []  # projects to just under the plan
    [alert] = evaluate_alerts(state(month_bytes=on_course + 1000), None, NOW, T)
    assert (alert.kind, alert.severity) == (DATA_PLAN, WARNING)
    assert alert.value > plan
    assert alert.since_ms == month_span(NOW)[0]
    # Already over the plan: critical, whatever the elapsed time.
    [over] = evaluate_alerts(state(month_bytes=plan + 1), None, NOW, T)
    assert (over.kind, over.severity, over.value) == (DATA_PLAN, CRITICAL, plan + 1)
    assert kinds(state(month_bytes=plan)) == [DATA_PLAN]  # warning: on course for more
    # The first hours of a month do not extrapolate...
    early = month_span(NOW)[0] + 23 * 3_600_000
    assert kinds(state(month_bytes=plan // 10), now=early) == []
    assert kinds(state(month_bytes=plan // 10), now=early, th=Thresholds(
        data_plan_min_elapsed_h=0)) == [DATA_PLAN]  # fmt: skip
    # ...and last month's counter does not count this month.
    stale = dataclasses.replace(state(month_bytes=plan * 2), rx_month="2026-02")
    assert kinds(stale) == []
    assert kinds(state(month_bytes=100), th=Thresholds(data_plan_bytes_per_month=99)) == [DATA_PLAN]


def test_every_kind_at_once_in_order() -> None:
    h = hp(outbox_oldest_age_ms=40 * MIN, camera_failsafe=True, camera_tamper=True,
           clock_offset_ms=3000)  # fmt: skip
    s = state(online=False, presence_ms=NOW - 20 * MIN, month_bytes=10**9, health=h)
    assert kinds(s) == [OFFLINE, BACKLOG_AGE, CAMERA_FAILSAFE, CAMERA_TAMPER, CLOCK_OFFSET,
                        DATA_PLAN]  # fmt: skip


def test_derive() -> None:
    h = hp(outbox_pending_batches=12, outbox_oldest_age_ms=90_000)
    d = derive(state(health=h, month_bytes=1_000), NOW)
    assert (d.status, d.backlog_batches, d.backlog_age_s) == ("online", 12, 90.0)
    assert (d.data_today_bytes, d.data_month_bytes) == (12_345, 1_000)
    assert d.data_month_projected_bytes == pytest.approx(3_100)
    assert (d.lag_s, d.seq_gaps, d.duplicate_ratio) == (2.5, 3, 0.1)
    d = derive(state(online=None, lag_ms=None, batches_total=0, duplicates=0), NOW + 86_400_000)
    assert (d.status, d.backlog_batches, d.backlog_age_s, d.lag_s) == ("unknown", None, None, None)
    assert d.duplicate_ratio is None
    assert d.data_today_bytes == 0  # yesterday's counter


def test_lag_is_the_newest_record_at_the_latest_arrival() -> None:
    # The health lane's batch arrives last, its snapshot 30 s old; the bulk lane brought a
    # record 1 s old a moment before: the collector was 3 s behind the vehicle, not 30 s.
    bulk, health = NOW - 4000, NOW - 2000
    spans = (EpochSpan(7, NOW - 60 * MIN, health, NOW - 61 * MIN, bulk - 1000),)
    s = dataclasses.replace(state(lag_ms=30_000), epochs=spans)
    assert derive(s, NOW).lag_s == 3.0
    # An older epoch still draining after a restart (records 70 min old) is no 70 min lag:
    # at its arrival the newest record the collector had was 4 s old.
    old = EpochSpan(6, NOW - 90 * MIN, NOW - 1000, NOW - 95 * MIN, NOW - 70 * MIN)
    assert derive(dataclasses.replace(s, epochs=(old, *spans)), NOW).lag_s == 4.0
    # A record stamped ahead of the collector's clock is no negative lag.
    ahead = (EpochSpan(7, NOW - 60 * MIN, NOW - 2000, NOW - 61 * MIN, NOW + 5000),)
    assert derive(dataclasses.replace(s, epochs=ahead), NOW).lag_s == 0.0


def test_no_pending_batch_is_no_backlog_age() -> None:
    # An older agent counted staged records in its age; with nothing pending it is 0.
    h = hp(outbox_pending_batches=0, outbox_oldest_age_ms=45_000)
    d = derive(state(health=h), NOW)
    assert (d.backlog_batches, d.backlog_age_s) == (0, 0.0)


def test_alert_thresholds_config() -> None:
    cfg = parse_config({"alerts": {"offline_after_min": 5, "clock_offset_ms": 500}}, "c.toml")
    assert (cfg.alerts.offline_after_min, cfg.alerts.clock_offset_ms) == (5, 500)
    assert cfg.alerts.backlog_age_min == 30
    assert cfg.alerts.data_plan_bytes_per_month == 500_000_000
    with pytest.raises(ConfigError, match=r"alerts\.backlog_age_min"):
        parse_config({"alerts": {"backlog_age_min": 0}}, "c.toml")
    with pytest.raises(ConfigError, match=r"alerts\.data_plan_bytes_per_month"):
        parse_config({"alerts": {"data_plan_bytes_per_month": "lots"}}, "c.toml")
    with pytest.raises(ConfigError, match=r"did you mean 'offline_after_min'"):
        parse_config({"alerts": {"offline_after_mins": 3}}, "c.toml")


def test_clock_ahead_holds_then_clears() -> None:
    s = dataclasses.replace(state(), clock_ahead_ms=3_600_000, clock_ahead_at_ms=NOW - MIN)
    assert al.CLOCK_AHEAD in kinds(s)
    [a] = [a for a in evaluate_alerts(s, None, NOW, T) if a.kind == al.CLOCK_AHEAD]
    assert (a.since_ms, a.value, a.severity) == (NOW - MIN, 3_600.0, al.WARNING)
    assert al.derive(s, NOW, T).clock_ahead_s == 3_600.0
    later = NOW - MIN + T.clock_ahead_hold_min * MIN
    assert al.CLOCK_AHEAD not in kinds(s, now=later)
    assert al.derive(s, later, T).clock_ahead_s == 0.0


def test_future_snapshot_never_starts_an_alert_in_the_future() -> None:
    s = state(health=hp(t=2**53 - 1, camera_tamper=True))
    [a] = [a for a in evaluate_alerts(s, s.latest_health, NOW, T) if a.kind == al.CAMERA_TAMPER]
    assert a.since_ms == NOW


def test_two_live_epochs() -> None:
    window = T.live_epochs_window_min * MIN
    # Two agents: both epochs receive batches in the same span, with records of the same
    # stretch of time.
    both = (
        EpochSpan(11, NOW - 5 * MIN, NOW - 1000, NOW - 6 * MIN, NOW - 2000),
        EpochSpan(22, NOW - 4 * MIN, NOW - 2000, NOW - 5 * MIN, NOW - 3000),
    )
    s = dataclasses.replace(state(), epochs=both)
    [a] = [a for a in evaluate_alerts(s, None, NOW, T) if a.kind == al.TWO_EPOCHS]
    assert "11" in a.message
    assert "22" in a.message
    assert a.severity == al.CRITICAL
    # An outbox recreated (a new epoch after the old one's last batch): no alert.
    switch = (EpochSpan(22, NOW - 4 * MIN, NOW - 1000), EpochSpan(11, NOW - 9 * MIN, NOW - 5 * MIN))
    assert al.live_epochs(switch, NOW, window, 0) is None
    # One of the two stopped long ago: no longer live.
    old = (
        EpochSpan(22, NOW - 4 * MIN, NOW - 1000),
        EpochSpan(11, NOW - 60 * MIN, NOW - 2 * window),
    )
    assert al.live_epochs(old, NOW, window, 0) is None


def test_old_epoch_draining_after_a_restart_is_not_two_agents() -> None:
    # Power cut at NOW - 5 min with a 3-hour backlog: the old epoch's closed batches drain
    # while the new epoch is live, so their receive spans overlap. The new epoch also sent
    # the records not yet in a batch at the cut (up to 30 s older than the old epoch's
    # last).
    cut = NOW - 5 * MIN
    old = EpochSpan(11, NOW - 8 * MIN, NOW - 2000, NOW - 180 * MIN, cut - 1000)
    new = EpochSpan(22, NOW - 4 * MIN, NOW - 1000, cut - 30_000, NOW - 2000)
    drain = dataclasses.replace(state(), epochs=(new, old))
    assert al.TWO_EPOCHS not in kinds(drain)
    assert al.record_overlap_ms(new, old) == 29_000
    # The same receipts with records of the same stretch of time: two agents.
    twin = dataclasses.replace(new, first_record_ms=NOW - 170 * MIN)
    [a] = [a for a in evaluate_alerts(dataclasses.replace(drain, epochs=(twin, old)), None, NOW, T)
           if a.kind == al.TWO_EPOCHS]  # fmt: skip
    assert (a.severity, a.since_ms) == (CRITICAL, NOW - 4 * MIN)
    assert "11" in a.message
    assert "22" in a.message
    # The tolerance is strict and configurable.
    limit = T.live_epochs_overlap_s * 1000
    at_limit = dataclasses.replace(new, first_record_ms=cut - 1000 - limit)
    past_limit = dataclasses.replace(new, first_record_ms=cut - 1000 - limit - 1)
    window = T.live_epochs_window_min * MIN
    assert al.live_epochs((at_limit, old), NOW, window, limit) is None
    assert al.live_epochs((past_limit, old), NOW, window, limit) == (past_limit, old)
    strict = Thresholds(live_epochs_overlap_s=0)
    assert al.TWO_EPOCHS in kinds(drain, th=strict)
    # Record times not known (no decoded batch since the store kept them): no alert.
    unknown = dataclasses.replace(twin, first_record_ms=None, last_record_ms=None)
    assert al.live_epochs((unknown, old), NOW, window, 0) is None


def test_live_epochs_overlap_is_configured_in_alerts() -> None:
    cfg = parse_config({"alerts": {"live_epochs_overlap_s": 5}}, "c.toml")
    assert cfg.alerts.live_epochs_overlap_s == 5
    with pytest.raises(ConfigError, match="live_epochs_overlap_s"):
        parse_config({"alerts": {"live_epochs_overlap_s": -1}}, "c.toml")
