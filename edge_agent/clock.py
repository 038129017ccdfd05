"""The agent's wall clock, made safe for a gateway whose clock is wrong.

A gateway with a dead RTC boots in 1970 (or before, after a bad manual set) until GNSS or
NTP corrects it; a bad RTC can also run decades ahead. The wire format only carries times
in ``[0, MAX_TIME_MS]``, so a raw clock outside that range would make every status, health
snapshot and record unencodable. Times are therefore clamped into the wire range (a
clamped time is wrong, but the record is kept and the process keeps running), and a clock
outside the plausible range is flagged in health under
:data:`protocol.contracts.CLOCK_INVALID`, so the
collector and the operator know the record times of that period cannot be trusted.

Deadlines never use this clock (they use the monotonic one); it only stamps things. The
agent's parts read both through one injected :class:`Clock`, so tests can drive time.
"""

from __future__ import annotations

import dataclasses
from typing import Final, Protocol

from daemon_kit import clock as kit_clock
from edge_agent.outbox import Records
from protocol.limits import MAX_TIME_MS
from protocol.records import Event, GnssFix, Health, RawFrame

# Health key: true while the gateway's wall clock is outside the plausible range.
# No gateway runs this software before 2024-01-01T00:00:00Z: a clock before it is a dead or
# unset RTC, not a real date.
PLAUSIBLE_FROM_MS: Final = 1_704_067_200_000


def clamp_time_ms(t_ms: int) -> int:
    """``t_ms`` moved into the wire format's range ``[0, MAX_TIME_MS]``."""
    return min(max(t_ms, 0), MAX_TIME_MS)


def raw_wall_ms() -> int:
    """The system clock as it is, ms since the Unix epoch; may be negative."""
    return kit_clock.wall_ms()


def wall_ms() -> int:
    """The system clock for stamping: always encodable, even when the clock is wrong."""
    return clamp_time_ms(raw_wall_ms())


class Clock(kit_clock.Clock, Protocol):
    """The shared clock, whose ``wall_ms`` is clamped into the wire range, plus the raw
    reading the agent checks for plausibility."""

    def raw_wall_ms(self) -> int: ...


class SystemClock(kit_clock.SystemClock):
    """The real clocks, with the wall clock clamped for stamping."""

    def wall_ms(self) -> int:
        return wall_ms()

    def raw_wall_ms(self) -> int:
        return raw_wall_ms()


def clock_invalid(raw_ms: int) -> bool:
    """Whether a raw wall-clock reading is obviously wrong (before 2024 or past the wire range).

    A clock some years ahead is not detectable from the gateway alone; the collector
    compares the times it receives with its own clock for that.
    """
    return raw_ms < PLAUSIBLE_FROM_MS or raw_ms > MAX_TIME_MS


def _fix(fix: GnssFix) -> GnssFix:
    return dataclasses.replace(fix, time_ms=clamp_time_ms(fix.time_ms))


def _event(event: Event) -> Event:
    fix = None if event.fix is None else _fix(event.fix)
    return dataclasses.replace(event, time_ms=clamp_time_ms(event.time_ms), fix=fix)


def _frame(frame: RawFrame) -> RawFrame:
    time_us = min(max(frame.time_us, 0), (MAX_TIME_MS + 1) * 1000 - 1)
    # The link follows its event's time, clamped the same way, so it still finds it.
    link = None if frame.event_ms is None else clamp_time_ms(frame.event_ms)
    return dataclasses.replace(frame, time_us=time_us, event_ms=link)


def _in_range(records: Records) -> bool:
    times = [e.time_ms for e in records.events]
    times += [e.fix.time_ms for e in records.events if e.fix is not None]
    times += [f.time_ms for f in records.gnss]
    times += [h.time_ms for h in records.health]
    times += [t for s in records.signals for t in s.times_ms]
    times += [f.time_us // 1000 for f in records.frames]
    times += [f.event_ms for f in records.frames if f.event_ms is not None]
    return all(0 <= t <= MAX_TIME_MS for t in times)


def clamp_records(records: Records) -> Records:
    """``records`` with every time clamped into the wire range; the same object if none was out.

    Record times of a live bus come from the kernel's receive timestamps, i.e. the wall
    clock: before 1970 they are negative, and the outbox refuses an append holding one.
    """
    if _in_range(records):
        return records
    return Records(
        events=tuple(_event(e) for e in records.events),
        signals=tuple(
            dataclasses.replace(s, times_ms=tuple(clamp_time_ms(t) for t in s.times_ms))
            for s in records.signals
        ),
        gnss=tuple(_fix(f) for f in records.gnss),
        frames=tuple(_frame(f) for f in records.frames),
        health=tuple(Health(clamp_time_ms(h.time_ms), h.values) for h in records.health),
    )
