"""A bad link between the taxis and the broker (the impairment proxy): partitions, a
stall, latency with jitter and drops, and a 2 kB/s link draining a backlog. The real
collector stores; the ledger must find nothing lost, doubled or reordered."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.faults import scenarios as sc
from harness.faults.proxy import BLACKHOLE, REFUSE

Record = Callable[[sc.Outcome], sc.Outcome]


@pytest.mark.parametrize("mode", [REFUSE, BLACKHOLE])
def test_partition(tmp_path: Path, record: Record, mode: str) -> None:
    out = record(sc.partition(tmp_path, sc.SUITE, mode))
    out.report.assert_clean()
    assert out.report.produced > 0


def test_stall_with_sockets_open(tmp_path: Path, record: Record) -> None:
    out = record(sc.stall(tmp_path, sc.SUITE))
    out.report.assert_clean()


def test_latency_jitter_and_drops(tmp_path: Path, record: Record) -> None:
    out = record(sc.bad_link(tmp_path, sc.SUITE))
    out.report.assert_clean()
    assert out.figures["link_drops"] != 0  # the drops really happened


def test_backlog_over_a_2_kilobyte_per_s_link(tmp_path: Path, record: Record) -> None:
    out = record(sc.slow_link_backlog(tmp_path, sc.SUITE))
    out.report.assert_clean()
    up = out.figures["link_bytes_up"]
    assert isinstance(up, int)
    # The cap held: the backlog could not have gone faster than the link allows.
    assert out.drain_s >= up / sc.SUITE.rate_bytes_per_s * 0.8
