"""Every test here starts real programs; each scenario's figures are printed (``-s`` or
``-rA`` shows them) and, with ``FAULTS_RESULTS=<file>``, appended to that file as JSON."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.faults.scenarios import Outcome

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path.resolve()
        if path.parent == HERE and path.name != "test_ledger.py":  # that one is pure
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def record() -> Callable[[Outcome], Outcome]:
    """Print an outcome's figures (and keep them, see the module docstring)."""

    def keep(outcome: Outcome) -> Outcome:
        print(outcome.line())
        target = os.environ.get("FAULTS_RESULTS")
        if target:
            with open(target, "a", encoding="utf-8") as f:
                f.write(outcome.json() + "\n")
        return outcome

    return keep
