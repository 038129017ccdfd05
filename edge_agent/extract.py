"""ADAS and vehicle event extraction: edge-triggered state machines.

Nothing here reads a clock: every call takes ``now_ms``, the time of the frame that
caused it. Each extractor keeps only the state it needs to see an edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent.decode import DecodedValues, Payload
from edge_agent.signs import (
    SOUND_TABLES,
    URBAN_FCW_SOUND,
    sign_is_electronic,
    sign_kind,
    sign_limit_kmh,
)
from edge_agent.speed import Braking, CameraSpeed, HarshBraking, WheelSpeed
from protocol.contracts import (
    CAMERA_FAILSAFE,
    CAMERA_MAINTENANCE,
    CAMERA_TAMPER,
    FCW,
    HARSH_BRAKING,
    HEADWAY_WARNING,
    LDW_LEFT,
    LDW_RIGHT,
    OVERSPEED,
    PCW,
    PEDS_IN_DZ,
    SITUATION_JOINS,
    TSR_SIGN,
    WIPER_SIGNALS,
    WIPERS_ON,
    EventType,
    split_signal,
)
from protocol.records import Event, FrameRef, GnssFix, Scalar

STANDARD_GRAVITY = 9.80665

# A fix older than this (in frame time) is not attached to an event.
FIX_MAX_AGE_MS = 10_000
# Wheel speeds older than this lose priority to the camera's own speed echo.
WHEEL_SPEED_MAX_AGE_MS = 1_000
# The camera's wiper bit pulses once per blade pass; this long without one means off.
CAMERA_WIPER_HOLD_MS = 20_000

# The wiper switches of the body-control message, as the road aggregates read them too.
WIPER_SWITCH_MESSAGE = split_signal(WIPER_SIGNALS[0])[0]
WIPER_SWITCHES = tuple(split_signal(name)[1] for name in WIPER_SIGNALS)

FAILSAFE_CAUSES = {1: "low_sun", 2: "blur", 4: "unused_4", 8: "unused_8"}

# How long a camera warning must stay off before a new rise is a new situation
# (docs/events.md): the camera's flags flicker within one encounter (a target at the edge
# of its time-to-collision threshold, a speed hovering at the limit, glare coming and
# going), and each flicker would otherwise be another urgent event.
HOLD_OFF_MS: dict[str, int] = {
    FCW.name: 2_000,
    PCW.name: 2_000,
    PEDS_IN_DZ.name: 2_000,
    LDW_LEFT.name: 2_000,
    LDW_RIGHT.name: 2_000,
    HEADWAY_WARNING.name: 5_000,
    OVERSPEED.name: 10_000,
    CAMERA_FAILSAFE.name: 30_000,
    CAMERA_MAINTENANCE.name: 60_000,
    CAMERA_TAMPER.name: 60_000,
}
# The same sign decided again this soon after it was last the decision is the same sign
# (the decision drops out for a burst or two while the sign passes out of view).
TSR_SIGN_HOLD_OFF_MS = 5_000


@dataclass(frozen=True, slots=True)
class ExtractorSettings:
    sound_table: dict[int, str] = field(default_factory=lambda: dict(SOUND_TABLES["standard"]))
    harsh_braking_g: float = 0.3


class _Edge:
    """Fires once when a condition becomes true; re-arms when it is false again."""

    __slots__ = ("_active",)

    def __init__(self) -> None:
        self._active = False

    def rises(self, active: bool | None) -> bool:
        if active is None:  # signal not in this frame (short frame): no news
            return False
        rose = active and not self._active
        self._active = active
        return rose


class _Situation:
    """One camera warning's situation: opened by a rise of its flag; a rise that comes
    within the hold-off after the last frame showing the flag belongs to it still."""

    __slots__ = ("_active", "_last_on_ms", "hold_off_ms")

    def __init__(self, hold_off_ms: int) -> None:
        self.hold_off_ms = hold_off_ms
        self._active = False
        self._last_on_ms: int | None = None

    def update(self, active: bool | None, now_ms: int) -> bool:
        """Take this frame's flag; True when it opens a new situation."""
        if active is None:  # signal not in this frame (short frame): no news
            return False
        rose = active and not self._active
        self._active = active
        if not active:
            return False
        last, self._last_on_ms = self._last_on_ms, now_ms
        return rose and not self._within_hold_off(last, now_ms)

    def is_open(self, now_ms: int) -> bool:
        """On, or off for no longer than the hold-off."""
        return self._active or self._within_hold_off(self._last_on_ms, now_ms)

    def _within_hold_off(self, last_on_ms: int | None, now_ms: int) -> bool:
        # A frame time before the last one (the gateway clock stepped back) ends it: a
        # clock step must not swallow a real warning.
        return last_on_ms is not None and 0 <= now_ms - last_on_ms <= self.hold_off_ms


def _flag(values: DecodedValues, name: str) -> bool | None:
    v = values.get(name)
    return None if v is None else bool(v)


def _at_least(values: DecodedValues, name: str, level: int) -> bool | None:
    v = values.get(name)
    return None if v is None else v >= level


class EventExtractor:
    """Turns decoded messages into events. One instance per vehicle."""

    def __init__(self, settings: ExtractorSettings | None = None) -> None:
        self.settings = settings or ExtractorSettings()
        self._edges: dict[str, _Edge] = {}
        self._situations: dict[str, _Situation] = {}
        self._fix: GnssFix | None = None
        self._fix_seen_ms = 0
        self._wheel_speed = WheelSpeed()
        self._camera_speed = CameraSpeed()
        self._camera_failsafe_bits: int | None = None
        self._failsafe_pending: tuple[int, FrameRef, dict[str, Scalar]] | None = None
        self._tsr_decision: int | None = None
        self._tsr_seen: dict[int, DecodedValues] = {}
        # The last sign decided and when it was last the decision.
        self._tsr_last: tuple[int, int] | None = None
        self._harsh_braking = HarshBraking(self.settings.harsh_braking_g)
        self._braking_frame: FrameRef | None = None
        self._wiper_switch_on = False
        self._camera_wiper_ms: int | None = None
        self._handlers = {
            "ME_Display_Warnings": self._on_display_warnings,
            "ME_Car_Signals": self._on_car_signals,
            "ME_Obstacle_Status": self._on_obstacle_status,
            "ME_TSR_Vision_Only": self._on_tsr_decision,
            "WHL_SPD11": self._on_wheel_speeds,
            WIPER_SWITCH_MESSAGE: self._on_body_control,
        }
        self._handlers.update({f"ME_TSR_{i}": self._on_tsr_detection for i in range(1, 8)})

    # -- inputs ------------------------------------------------------------------------

    def update_fix(self, fix: GnssFix, now_ms: int) -> None:
        self._fix = fix
        self._fix_seen_ms = now_ms

    def feed(
        self, message: str, values: DecodedValues, now_ms: int, source: FrameRef, data: Payload
    ) -> list[Event]:
        handler = self._handlers.get(message)
        if handler is None:
            return []
        return handler(values, now_ms, source, data)

    # -- state -------------------------------------------------------------------------

    def speed_kmh(self, now_ms: int) -> float | None:
        if self._wheel_speed.fresh(now_ms, WHEEL_SPEED_MAX_AGE_MS):
            return self._wheel_speed.kmh
        return self._camera_speed.kmh

    def fix(self, now_ms: int) -> GnssFix | None:
        if self._fix is None or now_ms - self._fix_seen_ms > FIX_MAX_AGE_MS:
            return None
        return self._fix

    def _event(
        self, kind: EventType, now_ms: int, source: FrameRef, attrs: dict[str, Scalar]
    ) -> Event:
        speed = self.speed_kmh(now_ms)
        return Event(
            type=kind.name,
            time_ms=now_ms,
            speed_kmh=None if speed is None else round(speed, 2),
            fix=self.fix(now_ms),
            source=source,
            attrs=attrs,
        )

    def _edge(self, name: str) -> _Edge:
        edge = self._edges.get(name)
        if edge is None:
            edge = self._edges[name] = _Edge()
        return edge

    def _situation(self, kind: EventType) -> _Situation:
        situation = self._situations.get(kind.name)
        if situation is None:
            situation = self._situations[kind.name] = _Situation(HOLD_OFF_MS[kind.name])
        return situation

    # -- camera ------------------------------------------------------------------------

    def _on_display_warnings(
        self, values: DecodedValues, now_ms: int, source: FrameRef, data: Payload
    ) -> list[Event]:
        sound_code = values.get("sound_type")
        sound = None if sound_code is None else self.settings.sound_table.get(int(sound_code))
        base: dict[str, Scalar] = {"sound_code": sound_code, "sound": sound, "raw": data.hex()}
        events: list[Event] = []

        def check(kind: EventType, active: bool | None, **extra: Scalar) -> None:
            if self._situation(kind).update(active, now_ms):
                events.append(self._event(kind, now_ms, source, {**base, **extra}))

        # A warning joins the situation of its precursor when that was open before this
        # burst; a precursor starting in this burst or while its warning is open is part
        # of the warning and gives no event of its own (docs/events.md, "Relations").
        joins_headway = self._joins(HEADWAY_WARNING, now_ms)
        joins_peds = self._joins(PEDS_IN_DZ, now_ms)
        check(
            FCW,
            _flag(values, "fcw_on"),
            urban=sound == URBAN_FCW_SOUND,
            headway_level=values.get("headway_warning_level"),
            **joins_headway,
        )
        check(PCW, _flag(values, "peds_fcw"), **joins_peds)
        if self._is_open(PCW, now_ms):
            self._situation(PEDS_IN_DZ).update(_flag(values, "peds_in_dz"), now_ms)
        else:
            check(PEDS_IN_DZ, _flag(values, "peds_in_dz"))
        check(LDW_LEFT, _flag(values, "left_ldw_on"))
        check(LDW_RIGHT, _flag(values, "right_ldw_on"))
        short_headway = _at_least(values, "headway_warning_level", 2)
        if self._is_open(FCW, now_ms):
            self._situation(HEADWAY_WARNING).update(short_headway, now_ms)
        else:
            check(
                HEADWAY_WARNING,
                short_headway,
                level=values.get("headway_warning_level"),
                headway_s=_rounded(values.get("headway_measurement"), 1),
            )
        check(
            OVERSPEED,
            _at_least(values, "tsr_warning_level", 1),
            level=values.get("tsr_warning_level"),
            limit_kmh=None if self._tsr_decision is None else sign_limit_kmh(self._tsr_decision),
        )
        events.extend(self._flush_failsafe())
        if self._situation(CAMERA_FAILSAFE).update(_flag(values, "failsafe"), now_ms):
            # The cause comes in 0x738, later in the same burst: hold the event until then.
            self._failsafe_pending = (now_ms, source, base)
        check(CAMERA_MAINTENANCE, _flag(values, "maintenance"), error_code=values.get("error_code"))
        check(CAMERA_TAMPER, _flag(values, "tamper_alert"))
        return events

    def _is_open(self, kind: EventType, now_ms: int) -> bool:
        return self._situation(kind).is_open(now_ms)

    def _joins(self, precursor: EventType, now_ms: int) -> dict[str, Scalar]:
        """The warning's link to its precursor's situation, if that is open."""
        return {SITUATION_JOINS: precursor.name} if self._is_open(precursor, now_ms) else {}

    def _on_car_signals(
        self, values: DecodedValues, now_ms: int, source: FrameRef, data: Payload
    ) -> list[Event]:
        events = self._on_camera_speed(values, now_ms, source)
        if values.get("wipers"):
            self._camera_wiper_ms = now_ms
        return events + self._wipers(now_ms, source, "camera")

    def _on_camera_speed(self, values: DecodedValues, now_ms: int, source: FrameRef) -> list[Event]:
        speed = values.get("speed")
        if speed is None or not values.get("speed_available", 1):
            return []
        camera = self._camera_speed
        camera.update(now_ms, float(speed))
        if self._wheel_speed.fresh(now_ms, WHEEL_SPEED_MAX_AGE_MS):
            return []  # the wheels are the better source while they last
        return self._braking(now_ms, camera.window.decel_mps2(), camera, source)

    def _on_obstacle_status(
        self, values: DecodedValues, now_ms: int, source: FrameRef, data: Payload
    ) -> list[Event]:
        bits = values.get("failsafe")
        if bits is not None:
            self._camera_failsafe_bits = int(bits)
        return self._flush_failsafe()

    def _flush_failsafe(self) -> list[Event]:
        """Emit a held camera_failsafe event with the latest 0x738 cause bits."""
        if self._failsafe_pending is None:
            return []
        time_ms, source, base = self._failsafe_pending
        self._failsafe_pending = None
        attrs = {**base, "causes": _failsafe_causes(self._camera_failsafe_bits)}
        return [self._event(CAMERA_FAILSAFE, time_ms, source, attrs)]

    def _on_tsr_detection(
        self, values: DecodedValues, now_ms: int, source: FrameRef, data: Payload
    ) -> list[Event]:
        sign = values.get("vision_only_sign_type")
        if sign is not None:
            self._tsr_seen[int(sign)] = values
        return []

    def _on_tsr_decision(
        self, values: DecodedValues, now_ms: int, source: FrameRef, data: Payload
    ) -> list[Event]:
        if "sign_type_d1" not in values:
            return []
        raw = values["sign_type_d1"]
        sign = None if raw is None else int(raw)
        previous, self._tsr_decision = self._tsr_decision, sign
        if sign is None:
            return []
        last, self._tsr_last = self._tsr_last, (sign, now_ms)
        if sign == previous:
            return []
        if last is not None and last[0] == sign and 0 <= now_ms - last[1] <= TSR_SIGN_HOLD_OFF_MS:
            return []
        detection = self._tsr_seen.get(sign, {})
        supplementary = values.get("supplementary_sign_type_d1")
        return [
            self._event(
                TSR_SIGN,
                now_ms,
                source,
                {
                    "sign_type": sign,
                    "kind": sign_kind(sign),
                    "limit_kmh": sign_limit_kmh(sign),
                    "electronic": sign_is_electronic(sign),
                    "supplementary": None if supplementary is None else int(supplementary),
                    "sign_x_m": detection.get("sign_position_x"),
                    "sign_y_m": detection.get("sign_position_y"),
                },
            )
        ]

    # -- vehicle -----------------------------------------------------------------------

    def _on_wheel_speeds(
        self, values: DecodedValues, now_ms: int, source: FrameRef, data: Payload
    ) -> list[Event]:
        wheels = [values.get(n) for n in ("WHL_SPD_FL", "WHL_SPD_FR", "WHL_SPD_RL", "WHL_SPD_RR")]
        known = [float(w) for w in wheels if w is not None]
        if not known:
            return []
        speed = self._wheel_speed
        speed.update(now_ms, sum(known) / len(known))
        return self._braking(now_ms, speed.window.decel_mps2(), speed, source)

    def _braking(
        self, now_ms: int, decel: float | None, speed: WheelSpeed | CameraSpeed, source: FrameRef
    ) -> list[Event]:
        detector = self._harsh_braking
        was_open = detector.open
        done = detector.update(now_ms, decel, speed.source, speed.window)
        if detector.open and not was_open:
            self._braking_frame = source  # the frame whose slope crossed the threshold
        return [] if done is None else [self._braking_event(done, source)]

    def _braking_event(self, braking: Braking, source: FrameRef) -> Event:
        return self._event(
            HARSH_BRAKING,
            braking.start_ms,
            self._braking_frame or source,
            {
                "decel_g": round(braking.decel_mps2 / STANDARD_GRAVITY, 3),
                "threshold_g": self.settings.harsh_braking_g,
                "peak_decel_g": round(braking.peak_mps2 / STANDARD_GRAVITY, 3),
                "speed_source": braking.source,
                "window_s": braking.window_ms / 1000,
            },
        )

    def _on_body_control(
        self, values: DecodedValues, now_ms: int, source: FrameRef, data: Payload
    ) -> list[Event]:
        switches = [values.get(n) for n in WIPER_SWITCHES]
        if all(s is None for s in switches):
            return []
        self._wiper_switch_on = any(bool(s) for s in switches)
        return self._wipers(now_ms, source, "vehicle")

    def _wipers(self, now_ms: int, source: FrameRef, origin: str) -> list[Event]:
        camera_on = (
            self._camera_wiper_ms is not None
            and now_ms - self._camera_wiper_ms <= CAMERA_WIPER_HOLD_MS
        )
        if self._edge(WIPERS_ON.name).rises(self._wiper_switch_on or camera_on):
            return [self._event(WIPERS_ON, now_ms, source, {"origin": origin})]
        return []


def _rounded(value: float | int | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _failsafe_causes(bits: int | None) -> str | None:
    if bits is None:
        return None
    names = [name for bit, name in FAILSAFE_CAUSES.items() if bits & bit]
    return ",".join(names) if names else "none"
