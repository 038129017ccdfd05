"""The agent produces what the contracts promise: the bundled DBCs and the default
collection profile yield every signal the road aggregates read, and the extractors emit
only contract event types."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from edge_agent import extract
from edge_agent.decode import MOBILEYE_DBC, VEHICLE_DBC, bundled_dbc, load_dbc
from edge_agent.profile import DEFAULT_PROFILE
from protocol import contracts
from protocol.contracts import EventType, VehicleSignal, split_signal


def missing_road_signals(
    signals: Iterable[VehicleSignal], databases: Sequence[Any], collected: Iterable[str]
) -> list[str]:
    """One line per road signal the agent would not deliver: its message or signal is
    in none of ``databases``, or the profile does not collect it."""
    signal_names: dict[str, set[str]] = {}
    for db in databases:
        for message in db.messages:
            signal_names.setdefault(message.name, set()).update(s.name for s in message.signals)
    kept = set(collected)
    problems = []
    for road in signals:
        message, signal = split_signal(road.name)
        if message not in signal_names:
            problems.append(f"{road.name}: no bundled DBC has a message {message}")
        elif signal not in signal_names[message]:
            problems.append(f"{road.name}: DBC message {message} has no signal {signal}")
        if road.name not in kept:
            problems.append(f"{road.name}: the default collection profile does not keep it")
    return problems


@pytest.fixture(scope="module")
def bundled() -> list[Any]:
    return [load_dbc(bundled_dbc(MOBILEYE_DBC)), load_dbc(bundled_dbc(VEHICLE_DBC))]


def _profile() -> list[str]:
    return [p.signal for p in DEFAULT_PROFILE]


def test_bundled_dbcs_and_default_profile_yield_every_road_signal(bundled: list[Any]) -> None:
    assert contracts.ROAD_SIGNALS, "the contract names no road signal"
    assert missing_road_signals(contracts.ROAD_SIGNALS, bundled, _profile()) == []


def test_a_renamed_road_signal_is_reported(bundled: list[Any]) -> None:
    renamed = [
        dataclasses.replace(s, name="CGW1.CF_Gway_WiperIntSwitch")
        if s.name == contracts.WIPER_INT_SW
        else s
        for s in contracts.ROAD_SIGNALS
    ]
    assert missing_road_signals(renamed, bundled, _profile()) == [
        "CGW1.CF_Gway_WiperIntSwitch: DBC message CGW1 has no signal CF_Gway_WiperIntSwitch",
        "CGW1.CF_Gway_WiperIntSwitch: the default collection profile does not keep it",
    ]


def test_a_renamed_message_or_a_signal_left_out_of_the_profile_is_reported(
    bundled: list[Any],
) -> None:
    moved = [VehicleSignal("ME_LKA_Left_Lane.quality", "lanes")]
    assert missing_road_signals(moved, bundled, ["ME_LKA_Left_Lane.quality"]) == [
        "ME_LKA_Left_Lane.quality: no bundled DBC has a message ME_LKA_Left_Lane"
    ]
    without = [n for n in _profile() if n != contracts.CAMERA_FAILSAFE_FLAG]
    assert missing_road_signals(contracts.ROAD_SIGNALS, bundled, without) == [
        f"{contracts.CAMERA_FAILSAFE_FLAG}: the default collection profile does not keep it"
    ]


def test_the_extractor_reads_the_wiper_switches_of_the_contract() -> None:
    assert [f"{extract.WIPER_SWITCH_MESSAGE}.{s}" for s in extract.WIPER_SWITCHES] == list(
        contracts.WIPER_SIGNALS
    )


# -- event types -----------------------------------------------------------------------


def _extract_tree() -> ast.Module:
    return ast.parse(inspect.getsource(extract))


def test_events_are_built_in_one_place_from_a_contract_event_type() -> None:
    """Every ``Event(...)`` of the extractors takes its type from an ``EventType``'s name,
    and the function that builds it only accepts an ``EventType`` (mypy holds callers to
    it), so a string literal cannot become an event type."""
    builders = []
    for fn in ast.walk(_extract_tree()):
        if not isinstance(fn, ast.FunctionDef):
            continue
        for call in ast.walk(fn):
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Event":
                kinds = [kw.value for kw in call.keywords if kw.arg == "type"]
                assert len(kinds) == 1, f"{fn.name}: Event() without type="
                kind = kinds[0]
                assert isinstance(kind, ast.Attribute), f"{fn.name}: {ast.unparse(kind)}"
                assert kind.attr == "name", f"{fn.name}: {ast.unparse(kind)}"
                assert isinstance(kind.value, ast.Name), f"{fn.name}: {ast.unparse(kind)}"
                param = next(a for a in fn.args.args if a.arg == kind.value.id)
                assert param.annotation is not None
                assert ast.unparse(param.annotation) == "EventType"
                builders.append(fn.name)
    assert builders == ["_event"]


def test_every_event_type_the_extractors_use_is_in_the_contract_and_vice_versa() -> None:
    tree = _extract_tree()
    used = {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(getattr(extract, node.id, None), EventType)
    }
    emitted = {getattr(extract, name).name for name in used}
    assert emitted <= contracts.EVENT_TYPE_NAMES
    # A contract type no extractor emits is a stale contract entry.
    assert emitted == contracts.EXTRACTED_EVENT_TYPES
    # Edge state is keyed by event type too: by the contract's name, not a copy of it.
    literal_kinds = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", getattr(node.func, "id", None))
        in {"_edge", "_event", "check"}
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]
    assert literal_kinds == []


def test_the_urgent_lane_follows_the_contract() -> None:
    from edge_agent.batching import BatchPolicy

    policy = BatchPolicy()
    for event in contracts.EVENT_TYPES:
        if event.origin != "outbox":
            assert policy.is_urgent(event.name) == (event.lane == contracts.URGENT), event.name
