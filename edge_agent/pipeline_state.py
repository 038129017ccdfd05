"""The pipeline's carried-over state as plain named fields, for replay checkpoints.

What the extractor and the thinner remember between frames (edges, last speeds, the held
camera failsafe, the last kept sample per signal...) is written out field by field, so a
checkpoint is readable data with a version, never pickled objects: a checkpoint outlives
the code that wrote it. :data:`EXTRACTOR_FIELDS` lists every attribute of the extractor
this covers; a test fails when the extractor grows state that is not listed here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edge_agent.errors import AgentError
from edge_agent.extract import HOLD_OFF_MS, EventExtractor, _Edge, _Situation
from edge_agent.thin import Thinner
from protocol.records import FrameRef, GnssFix

# 2: camera warnings carry their hold-off (situations) and the last decided sign; speed and
#    deceleration by source (wheel and camera windows, the braking episode).
STATE_VERSION = 2

# Attributes set from configuration or code, not carried between frames.
EXTRACTOR_CONFIG = frozenset({"settings", "_handlers"})
EXTRACTOR_FIELDS = frozenset(
    {
        "_edges",
        "_situations",
        "_fix",
        "_fix_seen_ms",
        "_wheel_speed",
        "_camera_speed",
        "_camera_failsafe_bits",
        "_failsafe_pending",
        "_tsr_decision",
        "_tsr_seen",
        "_tsr_last",
        "_harsh_braking",
        "_braking_frame",
        "_wiper_switch_on",
        "_camera_wiper_ms",
    }
)
# Plain values copied as they are.
_SCALARS = (
    "_fix_seen_ms",
    "_camera_failsafe_bits",
    "_tsr_decision",
    "_wiper_switch_on",
    "_camera_wiper_ms",
)


class PipelineStateError(AgentError):
    """A stored pipeline state this program cannot use."""


def _fix_fields(fix: GnssFix | None) -> dict[str, Any] | None:
    return None if fix is None else dataclasses.asdict(fix)


def extractor_state(ex: EventExtractor) -> dict[str, Any]:
    pending = ex._failsafe_pending
    state: dict[str, Any] = {name.lstrip("_"): getattr(ex, name) for name in _SCALARS}
    state.update(
        edges={name: edge._active for name, edge in ex._edges.items()},
        situations={
            name: [situation._active, situation._last_on_ms]
            for name, situation in ex._situations.items()
        },
        tsr_last=None if ex._tsr_last is None else list(ex._tsr_last),
        fix=_fix_fields(ex._fix),
        failsafe_pending=None
        if pending is None
        else [pending[0], pending[1].bus, pending[1].can_id, pending[2]],
        tsr_seen=[[sign, dict(values)] for sign, values in ex._tsr_seen.items()],
    )
    state.update(_speed_state(ex))
    return state


def _speed_state(ex: EventExtractor) -> dict[str, Any]:
    wheels = ex._wheel_speed.state()
    frame = ex._braking_frame
    return {
        "wheel_speed_kmh": wheels["kmh"],
        "wheel_speed_ms": wheels["seen_ms"],
        "decel": wheels["samples"],
        "camera_speed": ex._camera_speed.state(),
        "braking": ex._harsh_braking.state(),
        "braking_frame": None if frame is None else [frame.bus, frame.can_id],
    }


def _restore_speed(ex: EventExtractor, state: dict[str, Any]) -> None:
    ex._wheel_speed.restore(
        {
            "kmh": state["wheel_speed_kmh"],
            "seen_ms": state["wheel_speed_ms"],
            "samples": state["decel"],
        }
    )
    ex._camera_speed.restore(state["camera_speed"])
    ex._harsh_braking.restore(state["braking"])
    frame = state["braking_frame"]
    ex._braking_frame = None if frame is None else FrameRef(str(frame[0]), int(frame[1]))


def restore_extractor(ex: EventExtractor, state: dict[str, Any]) -> None:
    for name in _SCALARS:
        setattr(ex, name, state[name.lstrip("_")])
    ex._edges = {}
    for name, active in state["edges"].items():
        edge = ex._edges[name] = _Edge()
        edge._active = bool(active)
    ex._situations = {}
    for name, (active, last_on_ms) in state["situations"].items():
        # The hold-off is the code's rule, not state: a restored situation follows it.
        situation = ex._situations[name] = _Situation(HOLD_OFF_MS[name])
        situation._active = bool(active)
        situation._last_on_ms = None if last_on_ms is None else int(last_on_ms)
    tsr_last = state["tsr_last"]
    ex._tsr_last = None if tsr_last is None else (int(tsr_last[0]), int(tsr_last[1]))
    fix = state["fix"]
    ex._fix = None if fix is None else GnssFix(**fix)
    pending = state["failsafe_pending"]
    ex._failsafe_pending = (
        None
        if pending is None
        else (int(pending[0]), FrameRef(str(pending[1]), int(pending[2])), dict(pending[3]))
    )
    ex._tsr_seen = {int(sign): dict(values) for sign, values in state["tsr_seen"]}
    _restore_speed(ex, state)


def thinner_state(thinner: Thinner) -> dict[str, Any]:
    return {
        name: [t.last_ms, t.last_value, list(t.times), list(t.values)]
        for name, t in thinner._tracks.items()
    }


def restore_thinner(thinner: Thinner, state: dict[str, Any]) -> None:
    # A signal no longer in the profile has nothing left to thin; a new one starts fresh.
    for name, (last_ms, last_value, times, values) in state.items():
        track = thinner._tracks.get(name)
        if track is not None:
            track.last_ms, track.last_value = last_ms, last_value
            track.times, track.values = list(times), list(values)


def snapshot(ex: EventExtractor, thinner: Thinner) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "extractor": extractor_state(ex),
        "thinner": thinner_state(thinner),
    }


def restore(ex: EventExtractor, thinner: Thinner, state: dict[str, Any]) -> None:
    version = state.get("version")
    if version != STATE_VERSION:
        raise PipelineStateError(
            f"pipeline state version {version!r} is not supported (this agent reads "
            f"version {STATE_VERSION})"
        )
    try:
        restore_extractor(ex, state["extractor"])
        restore_thinner(thinner, state["thinner"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise PipelineStateError(f"pipeline state is incomplete or damaged: {exc!r}") from None
