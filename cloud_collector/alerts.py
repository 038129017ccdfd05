"""Vehicle health alerts and the derived per-vehicle figures: pure functions of the
stored state, the latest health snapshot and ``now`` (no clock reads, no I/O).

Rules (every comparison is strict: a value exactly at its threshold does not alert):

==================  ========  =========================================================
kind                severity  condition
==================  ========  =========================================================
``offline``         critical  status is offline (will message or clean shutdown) for
                              longer than ``offline_after_min``
``backlog_age``     warning   latest health ``outbox_oldest_age_ms`` > ``backlog_age_min``
``camera_failsafe`` warning   latest health ``camera_failsafe`` true, or the camera
                              failsafe state from the vehicle's data is on
``camera_tamper``   critical  latest health ``camera_tamper`` true
``clock_offset``    warning   \\|latest health ``clock_offset_ms``\\| > ``clock_offset_ms``
``clock_ahead``     warning   a message of the vehicle carried a time past the collector's
                              receive time by more than ``[intake] clock_skew_ms``, within
                              the last ``clock_ahead_hold_min``
``two_epochs``      critical  two epochs of the vehicle both received new batches within
                              the last ``live_epochs_window_min``, their receive spans
                              overlap, and so do the record times their batches carried,
                              by more than ``live_epochs_overlap_s``: two agents (two
                              outbox files) run as one vehicle. An old epoch still
                              draining after the agent restarted (a new epoch after every
                              unclean stop) carries only records from before the new
                              epoch's, give or take the records that were not yet in a
                              batch when it stopped, which the new epoch sends
``data_plan``       warning   payload bytes received this UTC month, extrapolated
                              linearly to the month's end, > ``data_plan_bytes_per_month``
                              (only after ``data_plan_min_elapsed_h`` of the month);
                    critical  bytes received this month already > the plan
==================  ========  =========================================================

"Latest health" is the snapshot with the latest record time, whatever the order it
arrived in, where a time past the collector's receive time counts as that receive time;
an alert from it clears when a later snapshot no longer shows the condition. No alert
begins after ``now`` (``since_ms`` is capped at it), whatever a vehicle's clock says.
"""

from __future__ import annotations

import calendar
import math
import time
from dataclasses import dataclass
from typing import Final

from cloud_collector.config import AlertsConfig
from cloud_collector.store.base import EpochSpan, HealthPoint, VehicleHealth, utc_day
from protocol import contracts
from protocol.records import Scalar

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000

OFFLINE: Final = "offline"
BACKLOG_AGE: Final = "backlog_age"
CAMERA_FAILSAFE: Final = "camera_failsafe"
CAMERA_TAMPER: Final = "camera_tamper"
CLOCK_OFFSET: Final = "clock_offset"
DATA_PLAN: Final = "data_plan"
CLOCK_AHEAD: Final = "clock_ahead"
TWO_EPOCHS: Final = "two_epochs"
KINDS: Final = (
    OFFLINE, BACKLOG_AGE, CAMERA_FAILSAFE, CAMERA_TAMPER, CLOCK_OFFSET, DATA_PLAN,
    CLOCK_AHEAD, TWO_EPOCHS,
)  # fmt: skip

WARNING: Final = "warning"
CRITICAL: Final = "critical"

# Health keys (protocol.contracts, listed in docs/health.md of the edge agent).
K_PENDING_BATCHES: Final = contracts.OUTBOX_PENDING_BATCHES
K_OLDEST_AGE_MS: Final = contracts.OUTBOX_OLDEST_AGE_MS
K_CLOCK_OFFSET_MS: Final = contracts.CLOCK_OFFSET_MS
K_CAMERA_FAILSAFE: Final = contracts.CAMERA_FAILSAFE_KEY
K_CAMERA_TAMPER: Final = contracts.CAMERA_TAMPER_KEY

Thresholds = AlertsConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    vehicle: str
    kind: str
    severity: str
    since_ms: int  # when the condition began, as far as the collector can tell
    message: str
    value: float  # the measured figure (seconds, ms, bytes; 1 for a flag)


def number(values: dict[str, Scalar], key: str) -> float | None:
    """A numeric health value, None when absent or not a number (bools are flags)."""
    v = values.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def flag(values: dict[str, Scalar], key: str) -> bool:
    v = values.get(key)
    if isinstance(v, bool | int | float):
        return bool(v)
    return isinstance(v, str) and v.strip().lower() in {"1", "true", "on", "yes", "active"}


def month_span(now_ms: int) -> tuple[int, int]:
    """Start and length (ms) of the UTC calendar month containing ``now_ms``."""
    t = time.gmtime(now_ms // 1000)
    start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, 0)) * 1000
    return start, calendar.monthrange(t.tm_year, t.tm_mon)[1] * 86_400_000


def month_bytes(state: VehicleHealth, now_ms: int) -> int:
    """Bytes received in the month of ``now_ms`` (0 when the counter is of an older month)."""
    current = time.strftime("%Y-%m", time.gmtime(now_ms // 1000))
    return state.rx_bytes_month if state.rx_month == current else 0


def today_bytes(state: VehicleHealth, now_ms: int) -> int:
    current = utc_day(now_ms)
    return state.rx_bytes_today if state.rx_day == current else 0


def projected_month_bytes(state: VehicleHealth, now_ms: int) -> float:
    """This month's bytes so far, extrapolated linearly to the end of the month."""
    start, length = month_span(now_ms)
    elapsed = max(now_ms - start, 1)
    return month_bytes(state, now_ms) * length / elapsed


def evaluate_alerts(
    vehicle_state: VehicleHealth,
    latest_health: HealthPoint | None,
    now_ms: int,
    thresholds: Thresholds,
) -> list[Alert]:
    """The alerts active for one vehicle at ``now_ms``, in ``KINDS`` order."""
    out = _offline(vehicle_state, now_ms, thresholds)
    out += _from_snapshot(vehicle_state, latest_health, now_ms, thresholds)
    out += _data_plan(vehicle_state, now_ms, thresholds)
    out += _clock_ahead(vehicle_state, now_ms, thresholds)
    out += _two_epochs(vehicle_state, now_ms, thresholds)
    return out


def _offline(vehicle_state: VehicleHealth, now_ms: int, thresholds: Thresholds) -> list[Alert]:
    s = vehicle_state.status
    if s.online is not False or s.presence_ms is None:
        return []
    off_ms = now_ms - s.presence_ms
    if off_ms <= thresholds.offline_after_min * MINUTE_MS:
        return []
    return [
        Alert(
            vehicle=s.vehicle, kind=OFFLINE, severity=CRITICAL, since_ms=s.presence_ms,
            message=f"offline for {off_ms // MINUTE_MS} min"
            f" (threshold {thresholds.offline_after_min} min)",
            value=off_ms / 1000,
        )
    ]  # fmt: skip


def _from_snapshot(
    vehicle_state: VehicleHealth,
    latest_health: HealthPoint | None,
    now_ms: int,
    thresholds: Thresholds,
) -> list[Alert]:
    """Backlog age, camera failsafe and tamper, clock offset: read from the last snapshot."""
    v = vehicle_state.status.vehicle
    out: list[Alert] = []
    values = latest_health.values if latest_health is not None else {}
    # A snapshot's own time may be in the future (a clock running ahead).
    t = min(latest_health.time_ms, now_ms) if latest_health is not None else now_ms
    age = number(values, K_OLDEST_AGE_MS)
    limit_ms = thresholds.backlog_age_min * MINUTE_MS
    if age is not None and age > limit_ms:
        out.append(
            Alert(
                vehicle=v, kind=BACKLOG_AGE, severity=WARNING,
                since_ms=int(t - age + limit_ms),
                message=f"oldest unsent record is {age / MINUTE_MS:.0f} min old"
                f" (threshold {thresholds.backlog_age_min} min)",
                value=age / 1000,
            )
        )  # fmt: skip
    if flag(values, K_CAMERA_FAILSAFE) or vehicle_state.camera_failsafe:
        source = "health" if flag(values, K_CAMERA_FAILSAFE) else "vehicle data"
        out.append(
            Alert(
                vehicle=v, kind=CAMERA_FAILSAFE, severity=WARNING, since_ms=t,
                message=f"camera failsafe active ({source})", value=1.0,
            )
        )  # fmt: skip
    if flag(values, K_CAMERA_TAMPER):
        out.append(
            Alert(
                vehicle=v, kind=CAMERA_TAMPER, severity=CRITICAL, since_ms=t,
                message="camera tamper alert active", value=1.0,
            )
        )  # fmt: skip
    offset = number(values, K_CLOCK_OFFSET_MS)
    if offset is not None and abs(offset) > thresholds.clock_offset_ms:
        out.append(
            Alert(
                vehicle=v, kind=CLOCK_OFFSET, severity=WARNING, since_ms=t,
                message=f"clock offset {offset:.0f} ms"
                f" (threshold {thresholds.clock_offset_ms} ms)",
                value=offset,
            )
        )  # fmt: skip
    return out


def recent_clock_ahead_ms(state: VehicleHealth, now_ms: int, thresholds: Thresholds) -> int:
    """How far ahead the vehicle's clock was in its last message that ran ahead, if that
    was within ``clock_ahead_hold_min``; 0 otherwise."""
    ahead, at = state.clock_ahead_ms, state.clock_ahead_at_ms
    if ahead is None or at is None or now_ms - at >= thresholds.clock_ahead_hold_min * MINUTE_MS:
        return 0
    return max(ahead, 0)


def _clock_ahead(state: VehicleHealth, now_ms: int, thresholds: Thresholds) -> list[Alert]:
    ahead = recent_clock_ahead_ms(state, now_ms, thresholds)
    if ahead <= 0 or state.clock_ahead_at_ms is None:
        return []
    return [
        Alert(
            vehicle=state.status.vehicle, kind=CLOCK_AHEAD, severity=WARNING,
            since_ms=min(state.clock_ahead_at_ms, now_ms),
            message=f"vehicle clock {ahead / 1000:.0f} s ahead of the collector's"
            " (times past the collector's never count as its presence or latest health)",
            value=ahead / 1000,
        )
    ]  # fmt: skip


def record_overlap_ms(a: EpochSpan, b: EpochSpan) -> int | None:
    """How long the record-time spans of two epochs overlap (negative: the gap between
    them); None when either span is unknown."""
    a0, a1, b0, b1 = a.first_record_ms, a.last_record_ms, b.first_record_ms, b.last_record_ms
    if a0 is None or a1 is None or b0 is None or b1 is None:
        return None
    return min(a1, b1) - max(a0, b0)


def live_epochs(
    epochs: tuple[EpochSpan, ...], now_ms: int, window_ms: int, tolerance_ms: int
) -> tuple[EpochSpan, EpochSpan] | None:
    """The two latest epochs that are both live (a new batch within ``window_ms``), whose
    receive spans overlap and whose record-time spans overlap by more than
    ``tolerance_ms``; None when there are not two such.

    Receive times alone cannot tell two agents from one agent that restarted: after an
    unclean stop the new epoch's batches arrive while the old epoch's backlog drains. The
    record times can: the old epoch's all predate the restart, except that the new epoch
    also sends the records that were staged but not yet in a batch at the stop (up to the
    agent's longest lane batch age), which the tolerance covers. Two agents record the
    same stretch of time, so their overlap grows for as long as both run. An epoch whose
    record times are unknown (no decoded new batch since the store kept them) never
    counts."""
    live = [e for e in epochs if now_ms - e.last_rx_ms <= window_ms]
    for i, a in enumerate(live):
        for b in live[i + 1 :]:
            if not (a.first_rx_ms <= b.last_rx_ms and b.first_rx_ms <= a.last_rx_ms):
                continue
            overlap = record_overlap_ms(a, b)
            if overlap is not None and overlap > tolerance_ms:
                return a, b
    return None


def _two_epochs(state: VehicleHealth, now_ms: int, thresholds: Thresholds) -> list[Alert]:
    pair = live_epochs(
        state.epochs,
        now_ms,
        thresholds.live_epochs_window_min * MINUTE_MS,
        thresholds.live_epochs_overlap_s * 1000,
    )
    if pair is None:
        return []
    a, b = pair
    overlap_s = (record_overlap_ms(a, b) or 0) / 1000
    return [
        Alert(
            vehicle=state.status.vehicle, kind=TWO_EPOCHS, severity=CRITICAL,
            since_ms=min(max(a.first_rx_ms, b.first_rx_ms), now_ms),
            message=f"two live epochs {a.epoch} and {b.epoch} with records from the same"
            f" {overlap_s:.0f} s: two agents (two outbox files) are running as this vehicle",
            value=2.0,
        )
    ]  # fmt: skip


def _data_plan(state: VehicleHealth, now_ms: int, thresholds: Thresholds) -> list[Alert]:
    plan = thresholds.data_plan_bytes_per_month
    used = month_bytes(state, now_ms)
    start, _ = month_span(now_ms)
    v = state.status.vehicle
    if used > plan:
        return [
            Alert(
                vehicle=v, kind=DATA_PLAN, severity=CRITICAL, since_ms=start,
                message=f"{used} bytes this month exceed the plan of {plan} bytes",
                value=float(used),
            )
        ]  # fmt: skip
    if now_ms - start < thresholds.data_plan_min_elapsed_h * HOUR_MS:
        return []
    projected = projected_month_bytes(state, now_ms)
    if projected > plan:
        return [
            Alert(
                vehicle=v, kind=DATA_PLAN, severity=WARNING, since_ms=start,
                message=f"on course for {projected:.0f} bytes this month"
                f" (plan {plan} bytes; {used} so far)",
                value=projected,
            )
        ]  # fmt: skip
    return []


@dataclass(frozen=True, slots=True, kw_only=True)
class Derived:
    """Per-vehicle figures of the fleet view."""

    status: str  # online | offline | unknown
    backlog_batches: int | None
    backlog_age_s: float | None
    data_today_bytes: int
    data_month_bytes: int
    data_month_projected_bytes: float
    lag_s: float | None
    seq_gaps: int
    duplicate_ratio: float | None  # duplicates / batches received (new + duplicate)
    # How far ahead of the collector's clock the vehicle's was, recently (0: not seen).
    clock_ahead_s: float = 0.0


def freshness_lag_s(state: VehicleHealth) -> float | None:
    """Lag as an operator reads it: at the collector's latest arrival from the vehicle,
    how old the newest record it had received from it was (any lane, recent epochs;
    receive time minus record time, never below 0). A single lane's batch waiting for its
    closing age (the health lane's 30 s) does not count: a fresher batch of another lane
    already brought newer records. Without record spans: the last batch's own lag."""
    spans = [e for e in state.epochs if e.last_record_ms is not None]
    if not spans:
        lag_ms = state.status.lag_ms
        return None if lag_ms is None else lag_ms / 1000
    newest_record = max(e.last_record_ms or 0 for e in spans)
    latest_arrival = max(e.last_rx_ms for e in spans)
    return max(0, latest_arrival - newest_record) / 1000


def derive(state: VehicleHealth, now_ms: int, thresholds: Thresholds | None = None) -> Derived:
    s = state.status
    values = state.latest_health.values if state.latest_health is not None else {}
    pending = number(values, K_PENDING_BATCHES)
    age = number(values, K_OLDEST_AGE_MS)
    received = s.batches_total + s.duplicates
    return Derived(
        status="unknown" if s.online is None else ("online" if s.online else "offline"),
        backlog_batches=None if pending is None else int(pending),
        # Nothing pending is no backlog, whatever an older agent counted as its age.
        backlog_age_s=0.0 if pending == 0 else (None if age is None else age / 1000),
        data_today_bytes=today_bytes(state, now_ms),
        data_month_bytes=month_bytes(state, now_ms),
        data_month_projected_bytes=projected_month_bytes(state, now_ms),
        lag_s=freshness_lag_s(state),
        seq_gaps=sum(state.seq_gaps.values()),
        duplicate_ratio=s.duplicates / received if received else None,
        clock_ahead_s=recent_clock_ahead_ms(state, now_ms, thresholds or Thresholds()) / 1000,
    )
