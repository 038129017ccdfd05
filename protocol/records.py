"""The records a taxi produces, as plain immutable values.

Times are integers: milliseconds since the Unix epoch, UTC (``*_ms``), except raw CAN
frames, whose offsets are microseconds so that frames of one camera burst keep their spacing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# A value a record may carry in its attributes or as a signal value.
Scalar = int | float | str | bool | None


class RecordKind(StrEnum):
    SIGNAL = "signal"
    EVENT = "event"
    GNSS = "gnss"
    FRAME = "frame"
    HEALTH = "health"


@dataclass(frozen=True, slots=True)
class GnssFix:
    """One position fix. ``mode`` follows gpsd: 0 unknown, 1 no fix, 2 2D, 3 3D."""

    time_ms: int
    lat: float
    lon: float
    mode: int
    alt_m: float | None = None
    speed_mps: float | None = None
    track_deg: float | None = None
    # System clock minus GNSS time when the fix arrived; a wrong clock after boot shows here.
    clock_offset_ms: int | None = None


@dataclass(frozen=True, slots=True)
class FrameRef:
    """Which CAN frame caused an event: bus name and arbitration id."""

    bus: str
    can_id: int


@dataclass(frozen=True, slots=True)
class Event:
    """An ADAS or vehicle event, e.g. ``fcw`` or ``harsh_braking``."""

    type: str
    time_ms: int
    speed_kmh: float | None
    fix: GnssFix | None
    source: FrameRef | None
    attrs: dict[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SignalSeries:
    """Thinned samples of one signal, column-oriented: ``times_ms[i]`` goes with ``values[i]``."""

    name: str
    times_ms: tuple[int, ...]
    values: tuple[float | int | None, ...]
    unit: str = ""


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A raw CAN frame kept for an event snapshot.

    ``event_ms`` links the frame to the event it is evidence for: that event's time (ms),
    on the frame's bus (schema 2). None for a frame linked to no event.
    """

    bus: str
    time_us: int
    can_id: int
    data: bytes
    extended: bool = False
    event_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Health:
    """An agent health snapshot; ``values`` holds named counters and gauges."""

    time_ms: int
    values: dict[str, Scalar] = field(default_factory=dict)
