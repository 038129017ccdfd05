"""Faults on the taxi: a clock stepped back by a day (libfaketime), the outbox on a
small full disk (tmpfs), two agents running as one vehicle."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.faults import scenarios as sc

Record = Callable[[sc.Outcome], sc.Outcome]


@pytest.mark.skipif(
    not sc.FAKETIME_LIB.exists() or shutil.which("faketime") is None,
    reason="needs Debian's faketime (scripts/setup.sh installs it)",
)
def test_clock_a_day_ahead_then_stepped_back(tmp_path: Path, record: Record) -> None:
    out = record(sc.clock_jump(tmp_path, sc.SUITE))
    # Health is stamped with the stepped wall clock: its order follows the clock.
    out.report.assert_clean(health_order=False)


@pytest.mark.skipif(not sc.tmpfs_available(), reason="mounting a tmpfs needs root")
def test_outbox_on_a_small_full_disk(tmp_path: Path, record: Record) -> None:
    out = record(sc.small_disk(tmp_path, sc.SUITE))
    assert out.figures["alive_while_full"], "the agent must keep running on a full disk"
    assert out.figures["urgent_events_lost"] == 0
    r = out.report
    assert (r.doubled, r.reordered, r.unexpected, r.altered) == (0, 0, 0, 0), r.line()
    evicted = out.figures["evicted_records"]
    assert isinstance(evicted, int)
    # Every record lost was declared lost by the agent's eviction notices (which carry
    # no position, so they are no event of the ledger's).
    assert r.lost <= evicted, f"{r.lost} records lost, {evicted} declared evicted"


def test_two_agents_one_vehicle(tmp_path: Path, record: Record) -> None:
    out = record(sc.two_agents_one_vehicle(tmp_path, sc.SUITE))
    out.report.assert_clean()
    assert out.figures["two_epochs"], f"no two_epochs alert: {out.figures['alerts']}"
