"""Unit tests of the pure aggregation logic."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_collector.store import aggregate as agg
from protocol.batch import Batch
from protocol.records import Event, GnssFix, SignalSeries
from tests.support.store_records import LAT, LON, T0, east


def fixes(*offsets_m: float, step_ms: int = 5_000) -> list[GnssFix]:
    return [
        GnssFix(T0 + i * step_ms, *east(LAT, LON, m), mode=3, speed_mps=10.0)
        for i, m in enumerate(offsets_m)
    ]


def build(**records: Any) -> Batch:
    return Batch.build(fleet_id="f", vehicle_id="v", epoch=1, seq=1, sent_ms=T0, **records)


def test_cells_and_hours() -> None:
    c12 = agg.cell_at(LAT, LON)
    assert agg.parent(c12) == agg.cell_at(LAT, LON, agg.AGG_RES)
    lat, lon = agg.centre(c12)
    assert agg.haversine_m(lat, lon, LAT, LON) < 15
    assert agg.hour_of(T0 + 3_599_999) == T0


def test_haversine() -> None:
    assert agg.haversine_m(LAT, LON, *east(LAT, LON, 100.0)) == pytest.approx(100.0, abs=0.5)


def test_one_pass_per_visit() -> None:
    state, deltas = agg.apply_batch(agg.VehicleState(), build(gnss=fixes(0, 1, 2, 3)))
    (key,) = deltas.cells
    assert deltas.cells[key].passes == 1
    assert deltas.cells[key].speed_n == 4
    # The next batch continues the same visit: no new pass.
    more = [GnssFix(T0 + 30_000, LAT, LON, 3)]
    _, again = agg.apply_batch(state, build(gnss=more))
    assert again.cells[key].passes == 0
    # After a long stop it is a new visit.
    later = [GnssFix(T0 + 30_000 + agg.PASS_GAP_MS + 1, LAT, LON, 3)]
    _, revisit = agg.apply_batch(state, build(gnss=later))
    assert revisit.cells[key].passes == 1


def test_passes_through_cells_and_no_fix_mode() -> None:
    track = fixes(*(i * 50.0 for i in range(12)))
    cells = list(dict.fromkeys(agg.cell_at(f.lat, f.lon, agg.AGG_RES) for f in track))
    _, deltas = agg.apply_batch(agg.VehicleState(), build(gnss=track))
    assert [deltas.cells[(c, T0)].passes for c in cells] == [1] * len(cells)
    no_fix = [GnssFix(T0, LAT, LON, mode=1)]
    _, nothing = agg.apply_batch(agg.VehicleState(), build(gnss=no_fix))
    assert nothing.cells == {}


def test_shares_during_pass() -> None:
    track = fixes(0, 1, 2)
    wipers = SignalSeries("CGW1.CF_Gway_WiperIntSw", (T0 + 6_000, T0 + 7_000), (1, 0))
    failsafe = SignalSeries("ME_Display_Warnings.failsafe", (T0,), (0,))
    state, deltas = agg.apply_batch(
        agg.VehicleState(), build(gnss=track, signals=[wipers, failsafe])
    )
    (delta,) = deltas.cells.values()
    assert (delta.passes, delta.wipers, delta.failsafe, delta.lanes) == (1, 1, 0, 0)
    assert state.wiper_bits == 0
    event = Event("camera_failsafe", T0 + 8_000, None, None, None, {})
    _, more = agg.apply_batch(state, build(events=[event]))
    (delta,) = more.cells.values()
    assert delta.failsafe == 1


def test_events_counted_in_cell_hour() -> None:
    fix = GnssFix(T0, LAT, LON, 3)
    events = [
        Event("fcw", T0 + agg.HOUR_MS, None, fix, None, {}),
        Event("ldw", T0, None, None, None, {}),
    ]
    _, deltas = agg.apply_batch(agg.VehicleState(), build(events=events))
    cell = agg.cell_at(LAT, LON, agg.AGG_RES)
    assert deltas.events == {(cell, T0 + agg.HOUR_MS, "fcw"): 1}


def test_sign_helpers() -> None:
    events = [
        Event("tsr_sign", T0, None, GnssFix(T0, LAT, LON, 3), None, {"sign_type": 5}),
        Event("tsr_sign", T0, None, None, None, {"sign_type": 5}),
        Event("tsr_sign", T0, None, GnssFix(T0, LAT, LON, 3), None, {"sign_type": True}),
    ]
    assert len(agg.sign_observations(events)) == 1
    ten = east(LAT, LON, 10.0)
    thirty = east(LAT, LON, 30.0)
    assert agg.nearest_cluster([(1, *thirty), (2, *ten)], LAT, LON) == 2
    assert agg.nearest_cluster([(1, *thirty)], LAT, LON) is None
    box = agg.degree_box(LAT, LON, 15.0)
    assert box[0] < east(LAT, LON, -15.0)[1] < box[2]
    assert box[0] < ten[1] < box[2]
    assert agg.running_mean(2.0, 1, 4.0) == 3.0


def test_advance_contiguous() -> None:
    assert agg.advance_contiguous(0, [(1, 0), (2, 0), (4, 0)], 0, 100) == 2
    assert agg.advance_contiguous(0, [(3, 0)], 99, 100) == 0
    assert agg.advance_contiguous(0, [(3, 0), (4, 50)], 100, 100) == 4
    assert agg.advance_contiguous(0, [(3, 0), (5, 99)], 100, 100) == 3


@given(st.sets(st.integers(1, 40)), st.integers(0, 10**12))
def test_without_a_grace_a_gap_holds_the_ack_however_old(seqs: set[int], now: int) -> None:
    """The default: an ack never passes a missing seq, so the taxi never deletes a batch
    that is still queued behind newer ones."""
    run = 0
    while run + 1 in seqs:
        run += 1
    assert agg.advance_contiguous(0, [(s, 0) for s in sorted(seqs)], now, None) == run


@given(st.sets(st.integers(1, 40)), st.integers(0, 200))
def test_advance_contiguous_properties(seqs: set[int], now: int) -> None:
    receipts = [(s, s) for s in sorted(seqs)]
    result = agg.advance_contiguous(0, receipts, now, 100)
    assert result == 0 or result in seqs
    # Without expired gaps the result is exactly the run from 1.
    run = 0
    while run + 1 in seqs:
        run += 1
    assert result >= run
    assert agg.advance_contiguous(result, receipts, now, 100) == result
