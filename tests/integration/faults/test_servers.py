"""The cloud side fails: the broker restarted (with and without persistence), the
collector frozen with SIGSTOP, PostgreSQL shut down. The real collector stores; the
ledger must find nothing lost, doubled or reordered."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.faults import scenarios as sc

Record = Callable[[sc.Outcome], sc.Outcome]


@pytest.mark.parametrize("persistence", [True, False], ids=["persistent", "volatile"])
def test_broker_restarts(tmp_path: Path, record: Record, persistence: bool) -> None:
    out = record(sc.broker_restart(tmp_path, sc.SUITE, persistence=persistence))
    out.report.assert_clean()


def test_collector_sigstop(tmp_path: Path, record: Record) -> None:
    out = record(sc.collector_sigstop(tmp_path, sc.SUITE))
    out.report.assert_clean()


def test_postgres_stopped(tmp_path: Path, record: Record) -> None:
    out = record(sc.postgres_stopped(tmp_path, sc.SUITE))
    out.report.assert_clean()
