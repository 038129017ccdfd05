"""source -> decode -> extract -> thin, for all buses of one vehicle.

The pipeline is synchronous and clock-free: the caller hands it frames (with their own
timestamps) and fixes, and drains events and samples when it wants to batch them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cantools.database.errors import DecodeError

from edge_agent import pipeline_state
from edge_agent.decode import DecodedValues, FrameDecoder
from edge_agent.evidence import Evidence
from edge_agent.extract import EventExtractor
from edge_agent.profile import VEHICLE_SPEED
from edge_agent.sources import FrameLike
from edge_agent.thin import Thinner
from protocol.records import Event, FrameRef, GnssFix, RawFrame, SignalSeries

log = logging.getLogger(__name__)

# Messages after which the vehicle speed may have changed.
_SPEED_MESSAGES = frozenset({"WHL_SPD11", "ME_Car_Signals"})
# The camera's warning message: its failsafe and tamper flags are health state.
_CAMERA_WARNINGS = "ME_Display_Warnings"


@dataclass
class BusCounters:
    """Per-bus counts; every frame lands in exactly one of the first five."""

    decoded: int = 0
    unknown_id: int = 0
    error_frames: int = 0
    remote_frames: int = 0
    decode_errors: int = 0
    short_frames: int = 0

    @property
    def frames(self) -> int:
        return (
            self.decoded
            + self.unknown_id
            + self.error_frames
            + self.remote_frames
            + self.decode_errors
        )


@dataclass(frozen=True)
class Drained:
    """What the pipeline held since the last drain, ready to be stored."""

    events: tuple[Event, ...]
    signals: tuple[SignalSeries, ...]
    fixes: tuple[GnssFix, ...]
    frames: tuple[RawFrame, ...] = ()  # evidence of urgent events

    def __bool__(self) -> bool:
        return bool(self.events or self.signals or self.fixes or self.frames)


@dataclass
class Pipeline:
    decoders: dict[str, FrameDecoder]
    extractor: EventExtractor
    thinner: Thinner
    on_event: Callable[[Event], None] | None = None
    # The camera model's: gives its warnings the Standard signal names (edge_agent/camera.py).
    normalise_warnings: Callable[[DecodedValues], DecodedValues] | None = None
    # Raw frames kept around urgent events; None: none kept (decode, evidence disabled).
    evidence: Evidence | None = None
    counters: dict[str, BusCounters] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    fixes: list[GnssFix] = field(default_factory=list)
    # The camera's last reported flags; None until it reported them.
    camera_failsafe: bool | None = None
    camera_tamper: bool | None = None
    # The last fix handed in (for health: fix mode, clock offset).
    last_fix: GnssFix | None = None

    def __post_init__(self) -> None:
        for bus in self.decoders:
            self.counters.setdefault(bus, BusCounters())
        self._refs: dict[tuple[str, int], FrameRef] = {}

    def add_bus(self, bus: str, decoder: FrameDecoder) -> None:
        self.decoders[bus] = decoder
        self.counters.setdefault(bus, BusCounters())

    def on_frame(self, bus: str, frame: FrameLike) -> None:
        counters = self.counters[bus]
        if frame.is_error_frame:
            counters.error_frames += 1
            return
        if frame.is_remote_frame:
            counters.remote_frames += 1
            return
        if self.evidence is not None:
            self.evidence.on_frame(bus, frame)
        compiled = self.decoders[bus].lookup(frame.arbitration_id, frame.is_extended_id)
        if compiled is None:
            counters.unknown_id += 1
            return
        data = frame.data
        try:
            values = compiled.decode(data)
        except (DecodeError, ValueError) as exc:
            _decode_failed(counters, bus, compiled.name, frame.arbitration_id, exc)
            return
        counters.decoded += 1
        if len(data) < compiled.length:
            counters.short_frames += 1
        now_ms = round(frame.timestamp * 1000)
        name = compiled.name
        if name == _CAMERA_WARNINGS:
            values = self._camera_warnings(values)
        self.thinner.feed(name, values, now_ms)
        events = self.extractor.feed(
            name, values, now_ms, self._ref(bus, frame.arbitration_id), data
        )
        if name in _SPEED_MESSAGES:
            self.thinner.offer(VEHICLE_SPEED, self.extractor.speed_kmh(now_ms), now_ms)
        if events:
            self._emit(events)

    def _emit(self, events: list[Event]) -> None:
        self.events.extend(events)
        if self.evidence is not None:
            for event in events:
                self.evidence.on_event(event)
        if self.on_event is not None:
            for event in events:
                self.on_event(event)

    def on_fix(self, fix: GnssFix, now_ms: int) -> None:
        self.extractor.update_fix(fix, now_ms)
        self.fixes.append(fix)
        self.last_fix = fix

    def drain(self, *, final: bool = False) -> Drained:
        """Hand over the events, thinned samples, fixes and completed evidence held so
        far; ``final`` (the last drain before a stop) completes evidence still collecting."""
        frames = () if self.evidence is None else self.evidence.take(final=final)
        drained = Drained(
            tuple(self.events), tuple(self.thinner.drain()), tuple(self.fixes), frames
        )
        self.events.clear()
        self.fixes.clear()
        return drained

    def snapshot(self) -> dict[str, Any]:
        """The state carried between frames as plain data with a version number.

        Taken right after :meth:`drain`: a thinner still holding samples would hand them
        over again after a restore.
        """
        return pipeline_state.snapshot(self.extractor, self.thinner)

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`snapshot`; an unknown version is a PipelineStateError."""
        pipeline_state.restore(self.extractor, self.thinner, state)

    @property
    def frames(self) -> int:
        """Frames handed in on all buses."""
        return sum(c.frames for c in self.counters.values())

    def _camera_warnings(self, values: DecodedValues) -> DecodedValues:
        """The warnings in the Standard signal names, with the camera's state flags noted."""
        if self.normalise_warnings is not None:
            values = self.normalise_warnings(values)
        failsafe, tamper = values.get("failsafe"), values.get("tamper_alert")
        if failsafe is not None:
            self.camera_failsafe = bool(failsafe)
        if tamper is not None:
            self.camera_tamper = bool(tamper)
        return values

    def _ref(self, bus: str, can_id: int) -> FrameRef:
        key = (bus, can_id)
        ref = self._refs.get(key)
        if ref is None:
            ref = self._refs[key] = FrameRef(bus, can_id)
        return ref


def _decode_failed(counters: BusCounters, bus: str, name: str, can_id: int, exc: Exception) -> None:
    """Count a frame of a known id that did not decode; log the 1st, 10th, 100th, ... only."""
    counters.decode_errors += 1
    n = counters.decode_errors
    if n in (1, 10, 100, 1000) or n % 10_000 == 0:
        log.warning("cannot decode %s (0x%X) on %s: %s (%d so far)", name, can_id, bus, exc, n)
