"""Batch age and resends run on a monotonic clock: a wall clock stepped back (a gateway
booted with a wrong RTC, then corrected by GNSS or NTP) or forward changes nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from edge_agent.batching import BatchPolicy
from edge_agent.outbox import META_CLEAN_CLOSE, Outbox, Records
from edge_agent.uplink import Uplink
from protocol.records import Event
from tests.support.outbox_box import FakeMonotonic, open_box
from tests.support.scripted_link import ScriptedLink, connector_for, until, uplink_settings

T0 = 1_760_000_000_000
DAY_MS = 86_400_000
FLEET, VEHICLE = "test-fleet", "taxi-1"  # as tests/edge/test_uplink.py's settings


def ldw(t: int) -> Records:
    return Records(events=(Event("ldw_left", t, 61.0, None, None, {}),))


async def test_a_batch_published_a_day_ahead_is_resent_after_the_clock_steps_back(
    tmp_path: Path,
) -> None:
    outbox = await Outbox.open(tmp_path / "o.db", fleet_id=FLEET, vehicle_id=VEHICLE)
    await outbox.append(ldw(T0 + DAY_MS), T0 + DAY_MS)
    await outbox.close_due_batches(T0 + DAY_MS, force=True)
    wall = [T0 + DAY_MS]  # the RTC runs a day ahead
    link = ScriptedLink()
    uplink = Uplink(
        uplink_settings(resend_after_ms=200),
        outbox,
        connector=connector_for(link),  # type: ignore[arg-type]
        now_ms=lambda: wall[0],
    )
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(uplink.run(stop))
        await until(lambda: len(link.published) >= 1, 5)
        wall[0] = T0  # NTP corrects the clock: a day back
        # Unacknowledged, so sent again after resend_after_ms, whatever the wall clock says.
        await until(lambda: len(link.published) >= 2, 5)
        stop.set()
    assert link.published[:2] == [("event", 1), ("event", 1)]
    await outbox.close()


async def test_staged_records_close_by_age_after_the_clock_steps_back(tmp_path: Path) -> None:
    policy = BatchPolicy(urgent_max_age_ms=100)
    box = await Outbox.open(tmp_path / "o.db", fleet_id=FLEET, vehicle_id=VEHICLE, policy=policy)
    await box.append(ldw(T0 + DAY_MS), T0 + DAY_MS)  # staged while the clock ran a day ahead
    await asyncio.sleep(0.15)
    assert await box.close_due_batches(T0) == 1  # the clock went back a day: still due
    await box.close()


async def test_a_clock_stepped_forward_does_not_close_everything_at_once(tmp_path: Path) -> None:
    box = await Outbox.open(tmp_path / "o.db", fleet_id=FLEET, vehicle_id=VEHICLE)
    await box.append(ldw(T0), T0)
    assert await box.close_due_batches(T0 + DAY_MS) == 0  # a day "later", a moment after
    await box.close()


async def test_the_outbox_clock_continues_across_restarts(tmp_path: Path) -> None:
    """What must survive a restart is re-derived: the clock continues from the highest
    stamp stored, so a published batch waits its resend time counted from its publish (the
    time the agent was down does not count), and staged records keep their age."""
    path = tmp_path / "o.db"
    clock = FakeMonotonic()
    box = await open_box(path, monotonic=clock)
    await box.append(ldw(T0), T0)
    await box.close_due_batches(T0, force=True)
    (batch,) = await box.due_for_publish(limit=10, resend_after_ms=60_000)
    await box.mark_published([(batch.epoch, batch.seq)])
    clock.advance_ms(20_000)
    await box.append(ldw(T0 + 1), T0 + 1)  # staged 20 s after the publish
    await box.close()

    later = FakeMonotonic()
    later.now = 5.0  # a reboot: the monotonic clock started again from near zero
    box = await open_box(path, monotonic=later)
    assert await box.close_due_batches(T0 - DAY_MS) == 0  # staged "just now" by this clock
    assert await box.due_for_publish(limit=10, resend_after_ms=60_000) == []
    later.advance_ms(1_000)
    assert await box.close_due_batches(T0 - DAY_MS) == 1  # 1 s of age: the urgent lane closes
    later.advance_ms(38_999)
    assert [b.seq for b in await box.due_for_publish(limit=10, resend_after_ms=60_000)] == [2]
    later.advance_ms(1)  # 60 s on the outbox clock since the publish
    due = await box.due_for_publish(limit=10, resend_after_ms=60_000)
    assert [(b.seq, b.publish_count) for b in due] == [(1, 1), (2, 0)]
    await box.close()


async def test_after_an_unclean_stop_published_batches_are_due_again(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    clock = FakeMonotonic()
    box = await open_box(path, monotonic=clock)
    await box.append(ldw(T0), T0)
    await box.close_due_batches(T0, force=True)
    (batch,) = await box.due_for_publish(limit=10, resend_after_ms=60_000)
    await box.mark_published([(batch.epoch, batch.seq)])
    await box.close()
    with sqlite3.connect(path) as db:  # as if the process had been killed
        db.execute("DELETE FROM meta WHERE key=?", (META_CLEAN_CLOSE,))
    db.close()
    again = FakeMonotonic()
    box = await open_box(path, monotonic=again)
    assert await box.due_for_publish(limit=10, resend_after_ms=60_000) == []
    again.advance_ms(60_000)
    (resent,) = await box.due_for_publish(limit=10, resend_after_ms=60_000)
    assert (resent.epoch, resent.seq) == (batch.epoch, batch.seq)  # under its own epoch
    await box.close()
