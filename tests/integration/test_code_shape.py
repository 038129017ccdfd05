"""Limits on the production code's shape that the linters do not express.

* No function longer than ``MAX_LINES`` lines, unless a comment on its ``def`` line (or the
  line above) gives the reason: ``# long: <why>``.
* The edge agent's ``Agent`` class stays wiring: under ``MAX_AGENT_LINES`` lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("protocol", "daemon_kit", "edge_agent", "cloud_collector", "fleet_sim")
MAX_LINES = 60
MAX_AGENT_LINES = 250
REASON = "# long:"

Function = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(tree: ast.AST) -> Iterator[Function]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _first_line(node: Function) -> int:
    return min([node.lineno, *(d.lineno for d in node.decorator_list)])


def _has_reason(lines: list[str], node: Function) -> bool:
    first = _first_line(node)
    nearby = lines[max(first - 2, 0) : node.body[0].lineno - 1]
    return any(REASON in line for line in nearby)


def too_long(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line name (N lines)`` for each function over the limit without a reason."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    found = []
    for node in _functions(ast.parse(text, filename=str(path))):
        length = (node.end_lineno or node.lineno) - _first_line(node) + 1
        if length > MAX_LINES and not _has_reason(lines, node):
            found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return found


def _sources() -> list[Path]:
    return sorted(
        p
        for part in PRODUCTION
        for p in (ROOT / part).rglob("*.py")
        if "build" not in p.relative_to(ROOT).parts
    )


def test_no_production_function_is_long_without_a_reason() -> None:
    offenders = [line for path in _sources() for line in too_long(path)]
    assert not offenders, f"over {MAX_LINES} lines without '{REASON} <why>':\n" + "\n".join(
        offenders
    )


def test_the_checker_sees_a_long_function_and_accepts_a_reason(tmp_path: Path) -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_LINES))
    plain = tmp_path / "plain.py"
    plain.write_text(f"def f() -> None:\n{body}")
    reasoned = tmp_path / "reasoned.py"
    reasoned.write_text(f"def f() -> None:  {REASON} one table, read top to bottom\n{body}")
    assert too_long(plain, tmp_path) == [f"plain.py:1 f ({MAX_LINES + 1} lines)"]
    assert too_long(reasoned, tmp_path) == []


def test_the_agent_class_is_wiring() -> None:
    tree = ast.parse((ROOT / "edge_agent" / "daemon.py").read_text(encoding="utf-8"))
    agent = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "Agent")
    length = (agent.end_lineno or agent.lineno) - agent.lineno + 1
    assert length < MAX_AGENT_LINES, f"Agent is {length} lines"


def test_no_module_imports_a_test_module() -> None:
    """Shared test code lives in tests/support or harness/, never in another test file."""
    found = []
    for path in sorted(ROOT.glob("tests/**/*.py")) + sorted(ROOT.glob("harness/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found += [
                f"{path.relative_to(ROOT)}:{node.lineno} {name}"
                for name in names
                if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_")
            ]
    assert found == []
