"""The collector's road aggregates and alerts, and the dashboard, name events, signals
and health keys only through protocol.contracts: a literal copy could drift from what the
agent sends and silently match nothing."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

from cloud_collector import alerts
from cloud_collector.store import aggregate, health
from protocol import contracts

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_SOURCE = ROOT / "frontend" / "src" / "main.js"
MAP_LEGEND_SOURCE = ROOT / "frontend" / "src" / "map-legend.js"
SIGNAL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\.[A-Za-z][A-Za-z0-9_]*\Z")


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _target(node: ast.stmt) -> str | None:
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return targets[0].id if len(targets) == 1 and isinstance(targets[0], ast.Name) else None


def _own_names(tree: ast.Module, registry: str | None) -> set[int]:
    """Literals that define the module's own names, the members of its tuple ``registry``
    (alert kinds: ``OFFLINE: Final = "offline"``, listed in ``KINDS``)."""
    assigns = [n for n in tree.body if isinstance(n, ast.Assign | ast.AnnAssign)]
    members: set[str] = set()
    for node in assigns:
        if registry is not None and _target(node) == registry and node.value is not None:
            members = {e.id for e in ast.walk(node.value) if isinstance(e, ast.Name)}
    return {
        id(node.value)
        for node in assigns
        if _target(node) in members and isinstance(node.value, ast.Constant)
    }


def copied_contract_names(source: str, registry: str | None = None) -> list[str]:
    """String literals of ``source`` that copy an event type, a health key or look like a
    ``Message.signal`` name, except where the module defines a name of its own listed in
    its tuple ``registry`` (an alert kind may be spelt like a health key)."""
    tree = ast.parse(source)
    skip = _docstrings(tree) | _own_names(tree, registry)
    literals = sorted(
        (n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)),
        key=lambda n: (n.lineno, n.col_offset),
    )
    found = []
    for node in literals:
        text = str(node.value)
        if id(node) in skip:
            continue
        if (
            text in contracts.EVENT_TYPE_NAMES
            or contracts.health_key(text) is not None
            or SIGNAL_LIKE.match(text)
        ):
            found.append(f"line {node.lineno}: {text!r}")
    return found


@pytest.mark.parametrize(
    ("module", "registry"), [(aggregate, None), (alerts, "KINDS"), (health, None)]
)
def test_aggregates_alerts_and_health_copy_no_contract_name(
    module: ModuleType, registry: str | None
) -> None:
    assert copied_contract_names(inspect.getsource(module), registry) == []


def test_a_copied_name_is_reported() -> None:
    source = (
        '"""Doc naming ME_Display_Warnings.failsafe is fine."""\n'
        'TAMPER: Final = "camera_tamper"\n'
        "KINDS = (TAMPER,)\n"
        "def f(values):\n"
        '    return values.get("outbox_oldest_age_ms"), "CGW1.CF_Gway_WiperIntSw", "wipers_on"\n'
        'x = "bus_camera_active"\n'
    )
    assert copied_contract_names(source, "KINDS") == [
        "line 5: 'outbox_oldest_age_ms'",
        "line 5: 'CGW1.CF_Gway_WiperIntSw'",
        "line 5: 'wipers_on'",
        "line 6: 'bus_camera_active'",
    ]
    assert copied_contract_names(source)[0] == "line 2: 'camera_tamper'"


def test_the_aggregates_read_exactly_the_contracts_road_signals_and_event_types() -> None:
    assert aggregate.TRACKED_SIGNALS == contracts.ROAD_SIGNAL_NAMES
    for name in (aggregate.SIGN_EVENT, aggregate.WIPERS_EVENT, aggregate.FAILSAFE_EVENT):
        assert name in contracts.EVENT_TYPE_NAMES


def test_the_alerts_read_contract_health_keys() -> None:
    keys = {v for k, v in vars(alerts).items() if k.startswith("K_")}
    assert keys
    assert [k for k in keys if contracts.health_key(k) is None] == []


def _js_object_keys(source: str, const: str) -> list[str]:
    body = re.search(rf"const {const} = \{{(.*?)\}};", source, re.S)
    assert body is not None, const
    return re.findall(r"(\w+):", body.group(1))


def test_the_dashboard_names_only_contract_event_types_and_health_keys() -> None:
    source = DASHBOARD_SOURCE.read_text(encoding="utf-8")
    colours = _js_object_keys(MAP_LEGEND_SOURCE.read_text(encoding="utf-8"), "EVENT_COLORS")
    assert colours
    assert [c for c in colours if c not in contracts.EVENT_TYPE_NAMES] == []
    series = re.search(r"const PREFERRED_SERIES = \[(.*?)\];", source, re.S)
    assert series is not None
    page = set(_js_object_keys(source, "PAGE_SERIES"))
    preferred = re.findall(r'"(\w+)"', series.group(1))
    assert preferred
    assert [k for k in preferred if k not in page and contracts.health_key(k) is None] == []
