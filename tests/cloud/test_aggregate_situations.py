"""What the road aggregates count (docs/events.md): every located event under its type, and
in the hotspot rate each traffic situation once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from cloud_collector.store import RoadQuery, Store, open_store
from cloud_collector.store import aggregate as agg
from protocol.contracts import SITUATION_JOINS
from protocol.records import Event, FrameRef, Scalar
from tests.support.store_records import GRACE_MS, LAT, LON, T0, batch, fix


def located(kind: str, t: int, **attrs: Scalar) -> Event:
    return Event(kind, t, 30.0, fix(t), FrameRef("cam", 0x700), dict(attrs))


# One drive through one cell: a tailgating encounter that escalates to an FCW, a pedestrian
# whose PCW follows the danger-zone alert, a harsh braking, and what is not a situation.
ENCOUNTERS = [
    located("headway_warning", T0 + 1_000),
    located("fcw", T0 + 2_000, **{SITUATION_JOINS: "headway_warning"}),
    located("peds_in_dz", T0 + 10_000),
    located("pcw", T0 + 10_400, **{SITUATION_JOINS: "peds_in_dz"}),
    located("harsh_braking", T0 + 12_000),
    located("fcw", T0 + 20_000),
    located("tsr_sign", T0 + 21_000, sign_type=4),
    located("wipers_on", T0 + 22_000),
    located("camera_failsafe", T0 + 23_000),
    located("camera_tamper", T0 + 24_000),
    located("camera_maintenance", T0 + 25_000),
]
SITUATIONS = 4  # the headway encounter, the pedestrian, the braking, the second FCW


def test_counts_per_type_and_situations_once() -> None:
    _, deltas = agg.apply_batch(agg.VehicleState(), batch(1, events=ENCOUNTERS))
    cell = agg.cell_at(LAT, LON, agg.AGG_RES)
    assert deltas.situations == {(cell, T0): SITUATIONS}
    assert {kind: n for (_, _, kind), n in deltas.events.items()} == {
        "headway_warning": 1,
        "fcw": 2,
        "peds_in_dz": 1,
        "pcw": 1,
        "harsh_braking": 1,
        "tsr_sign": 1,
        "wipers_on": 1,
        "camera_failsafe": 1,
        "camera_tamper": 1,
        "camera_maintenance": 1,
    }


def test_an_event_without_a_fix_is_no_situation_of_any_cell() -> None:
    unlocated = Event("fcw", T0, None, None, None, {})
    _, deltas = agg.apply_batch(agg.VehicleState(), batch(1, events=[unlocated]))
    assert deltas.situations == {}


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await open_store(store_url, gap_grace_ms=GRACE_MS)
    try:
        yield s
    finally:
        await s.close()


async def ingest(store: Store, seq: int, **records: Any) -> None:
    b = batch(seq, **records)
    await store.ingest(b, topic_channel="batch", payload_bytes=100, received_ms=T0 + 60_000)


async def test_the_hotspot_rate_counts_situations(store: Store) -> None:
    passes = [fix(T0), fix(T0 + 30_000)]
    await ingest(store, 1, gnss=passes, events=ENCOUNTERS)
    # A batch of events that are no situation still adds to the counts.
    signs = [located("tsr_sign", T0 + 40_000, sign_type=4)]
    await ingest(store, 2, events=signs)
    (row,) = await store.road_conditions(RoadQuery(min_exposure=1))
    assert row.exposure == 1
    assert row.counts["fcw"] == 2
    assert row.counts["tsr_sign"] == 2
    assert row.hotspot_rate == 100.0 * SITUATIONS
    # With a type, every event of that type is counted, joined or not.
    (fcw,) = await store.road_conditions(RoadQuery(type="fcw", min_exposure=1))
    assert (fcw.counts, fcw.hotspot_rate) == ({"fcw": 2}, 200.0)
