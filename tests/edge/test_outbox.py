"""The SQLite outbox, on real files: life cycle, durability, eviction, recovery."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge_agent.batching import BatchPolicy
from edge_agent.errors import OutboxError
from edge_agent.outbox import APPLICATION_ID, Records
from edge_agent.outbox_status import read_status
from protocol import ProtocolError, decode_batch
from protocol.notices import noticed_seqs
from protocol.records import Event, GnssFix, Health, SignalSeries
from tests.support.outbox_box import FLEET, VEHICLE, FakeMonotonic, open_box

T0 = 1_700_000_000_000


def bulk(t: int, n: int = 10, name: str = "speed") -> Records:
    times = tuple(t + 100 * i for i in range(n))
    return Records(
        signals=(SignalSeries(name, times, tuple(float(i) for i in range(n)), "km/h"),),
        gnss=(GnssFix(t, 52.5, 13.4, 3, speed_mps=10.0),),
        events=(Event("tsr_sign", t, 40.0, None, None, {"limit": 50}),),
    )


def urgent(t: int) -> Records:
    return Records(events=(Event("fcw", t, 52.0, None, None, {"ttc_s": 1.1}),))


def health(t: int, cpu: float = 0.5) -> Records:
    return Records(health=(Health(t, {"cpu": cpu, "can_errors": 0}),))


def moved_aside(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".corrupt-" in p.name)


async def test_life_cycle_append_close_publish_ack(tmp_path: Path) -> None:
    clock = FakeMonotonic()
    box = await open_box(tmp_path / "outbox.db", monotonic=clock)
    await box.append(bulk(T0), T0)
    await box.append(urgent(T0 + 5), T0)
    await box.append(health(T0 + 7), T0)
    clock.advance_ms(999)
    assert await box.close_due_batches(T0 + 999) == 0  # nothing due yet
    clock.advance_ms(1)
    assert await box.close_due_batches(T0 + 1_000) == 1  # the urgent event, after 1 s
    clock.advance_ms(8_999)
    assert await box.close_due_batches(T0 + 9_999) == 0
    clock.advance_ms(1)
    assert await box.close_due_batches(T0 + 10_000) == 1  # bulk after 10 s
    assert await box.close_due_batches(T0 + 10_001, force=True) == 1  # health, drained
    stats = await box.stats(T0 + 20_000)
    assert (stats.pending_batches, stats.staged_records, stats.next_seq) == (3, 0, 4)
    assert stats.oldest_pending_age_ms == 20_000

    due = await box.due_for_publish(limit=10, resend_after_ms=30_000)
    # Urgent first, then health, then bulk, whatever their seq.
    assert [(b.channel, b.seq) for b in due] == [("event", 1), ("health", 3), ("batch", 2)]
    for stored in due:
        batch = decode_batch(stored.payload)
        assert (batch.header.vehicle_id, batch.header.epoch) == (VEHICLE, box.epoch)
        assert batch.header.seq == stored.seq
        assert (batch.header.first_ms, batch.header.last_ms) == (stored.first_ms, stored.last_ms)
    assert decode_batch(due[0].payload).events[0].type == "fcw"
    bulk_batch = decode_batch(due[2].payload)
    assert bulk_batch.signals == bulk(T0).signals
    assert [e.type for e in bulk_batch.events] == ["tsr_sign"]  # not urgent: bulk

    await box.mark_published([(b.epoch, b.seq) for b in due])
    clock.advance_ms(29_999)
    assert await box.due_for_publish(limit=10, resend_after_ms=30_000) == []
    clock.advance_ms(1)
    resent = await box.due_for_publish(limit=2, resend_after_ms=30_000)
    assert [(b.seq, b.publish_count) for b in resent] == [(1, 1), (3, 1)]

    assert await box.acknowledge(box.epoch, 2) == 2
    assert await box.acknowledge(box.epoch, 2) == 0  # repeated ack
    left = await box.due_for_publish(limit=10, resend_after_ms=0)
    assert [b.seq for b in left] == [3]
    stats = await box.stats(T0 + 50_000)
    assert (stats.pending_batches, stats.highest_acked_seq) == (1, 2)
    await box.close()
    with pytest.raises(OutboxError, match="closed"):
        await box.stats(T0)


async def test_tasks_of_one_process_may_use_it_at_once(tmp_path: Path) -> None:
    """The flusher, closer, publisher and ack listener share one outbox concurrently."""
    box = await open_box(tmp_path / "o.db")
    t0 = 1_772_436_600_000

    async def flusher() -> None:
        for i in range(30):
            await box.append(urgent(t0 + i) if i % 3 else bulk(t0 + 1000 * i), t0 + i)

    async def closer_and_publisher() -> None:
        for i in range(30):
            await box.close_due_batches(t0 + 10 * i, force=True)
            due = await box.due_for_publish(limit=16, resend_after_ms=60_000)
            await box.mark_published([(b.epoch, b.seq) for b in due])
            await box.stats(t0)

    # Without the outbox's own lock this fails with a nested BEGIN, or hangs.
    await asyncio.wait_for(asyncio.gather(flusher(), closer_and_publisher(), flusher()), 30)
    await box.close_due_batches(t0, force=True)
    stats = await box.stats(t0)
    assert stats.staged_records == 0
    assert stats.pending_batches == box.next_seq - 1
    assert await box.acknowledge(box.epoch, box.next_seq - 1) == stats.pending_batches
    await box.close()


async def test_ack_for_another_epoch_is_ignored(tmp_path: Path) -> None:
    box = await open_box(tmp_path / "outbox.db")
    await box.append(urgent(T0), T0)
    await box.close_due_batches(T0, force=True)
    assert await box.acknowledge(box.epoch ^ 1, 10) == 0
    assert (await box.stats(T0)).pending_batches == 1
    assert await box.acknowledge(box.epoch, 99) == 1  # beyond next_seq: clamped
    assert (await box.stats(T0)).highest_acked_seq == 1
    await box.close()


async def test_seq_and_epoch_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = await open_box(path)
    epoch = box.epoch
    for i in range(3):
        await box.append(urgent(T0 + i), T0 + i)
        await box.close_due_batches(T0 + i, force=True)
    await box.acknowledge(epoch, 3)  # everything acked: the table is empty
    await box.close()
    box = await open_box(path)
    assert (box.epoch, box.next_seq) == (epoch, 4)
    await box.append(urgent(T0 + 9), T0 + 9)
    await box.close_due_batches(T0 + 9, force=True)
    due = await box.due_for_publish(limit=10, resend_after_ms=0)
    assert [b.seq for b in due] == [4]
    assert (await box.stats(T0)).highest_acked_seq == 3
    await box.close()


async def test_a_new_file_gets_a_new_epoch(tmp_path: Path) -> None:
    a = await open_box(tmp_path / "a.db")
    b = await open_box(tmp_path / "b.db")
    assert a.epoch != b.epoch
    assert 0 < a.epoch < 2**64
    await a.close()
    await b.close()


async def test_checkpoint_is_stored_with_the_records(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = await open_box(path)
    assert await box.load_checkpoint() is None
    await box.append(bulk(T0), T0, checkpoint=b"can-offset:1234")
    # A record the protocol would reject aborts the whole call: no checkpoint either.
    bad = Records(events=(Event("fcw", -5, None, None, None),))
    with pytest.raises(ProtocolError):
        await box.append(bad, T0 + 1, checkpoint=b"can-offset:9999")
    await box.close()
    # Opened again (as after a restart): both records and checkpoint are there.
    again = await open_box(path)
    assert await again.load_checkpoint() == b"can-offset:1234"
    assert (await again.stats(T0)).staged_records == len(bulk(T0).signals[0].times_ms) + 2
    await again.close()


async def test_large_closes_are_split_into_several_batches(tmp_path: Path) -> None:
    policy = BatchPolicy(max_records=25)
    clock = FakeMonotonic()
    box = await open_box(tmp_path / "outbox.db", policy=policy, monotonic=clock)
    for i in range(10):
        await box.append(bulk(T0 + i * 1000, n=10, name=f"s{i}"), T0 + i * 1000)
    clock.advance_ms(policy.bulk_max_age_ms)
    assert await box.close_due_batches(T0 + 100_000) >= 5
    due = await box.due_for_publish(limit=100, resend_after_ms=0)
    assert [b.seq for b in due] == list(range(1, len(due) + 1))
    total = 0
    for stored in due:
        counts = decode_batch(stored.payload).header.counts
        assert counts.total <= 25
        total += counts.total
    assert total == 10 * 12
    await box.close()


async def test_eviction_drops_bulk_before_events_and_counts(tmp_path: Path) -> None:
    box = await open_box(tmp_path / "outbox.db", max_bytes=15_000)
    for i in range(40):
        t = T0 + i * 1000
        await box.append(bulk(t, n=50), t)
        await box.append(urgent(t), t)
        await box.close_due_batches(t, force=True)
    stats = await box.stats(T0)
    assert stats.pending_bytes + stats.staged_bytes <= 15_000
    assert stats.counters["evicted_bulk"] > 0
    assert stats.counters.get("evicted_event", 0) == 0
    assert stats.counters["evicted_records"] >= stats.counters["evicted_bulk"]
    due = await box.due_for_publish(limit=1000, resend_after_ms=0)
    channels = [b.channel for b in due]
    assert channels.count("event") == 40  # every event survived
    seqs = sorted(b.seq for b in due)
    assert seqs[-1] == stats.next_seq - 1 == 80  # evictions leave gaps, seqs never reused
    assert len(seqs) < 80
    status = read_status(tmp_path / "outbox.db", T0)
    assert status["dropped"] == dict(stats.counters)
    await box.close()


async def test_unpublished_bytes_count_what_the_broker_has_not_taken(tmp_path: Path) -> None:
    box = await open_box(tmp_path / "outbox.db")
    assert await box.unpublished_bytes() == 0
    for i in range(3):
        await box.append(bulk(T0 + i * 1000), T0 + i * 1000)
        await box.close_due_batches(T0 + i * 1000, force=True)
    due = await box.due_for_publish(limit=10, resend_after_ms=0)
    assert await box.unpublished_bytes() == sum(len(b.payload) for b in due)
    await box.mark_published([(b.epoch, b.seq) for b in due[:2]])
    assert await box.unpublished_bytes() == len(due[2].payload)
    await box.close()


async def test_evictions_are_one_warning_per_condition_with_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = await open_box(tmp_path / "outbox.db", max_bytes=15_000)
    with caplog.at_level(logging.WARNING, logger="edge_agent.outbox"):
        for i in range(40):
            t = T0 + i * 1000
            await box.append(bulk(t, n=50), t)
            await box.close_due_batches(t, force=True)
        stats = await box.stats(T0)
        during = [r.getMessage() for r in caplog.records if "evicted" in r.getMessage()]
        await box.close()
    lines = [r.getMessage() for r in caplog.records if "evicted" in r.getMessage()]
    # The first eviction at once; the rest, held back by the rate limit, summed up at close.
    assert len(during) == 1
    assert "in 1 eviction:" in during[0]
    assert len(lines) == 2
    evicted = stats.counters["evicted_bulk"]
    summed = [int(line.split("evicted ")[1].split(" batches")[0]) for line in lines]
    assert sum(summed) == evicted > 2
    assert " evictions in the last " in lines[1]
    assert str(tmp_path / "outbox.db") in lines[1]


async def test_every_evicted_seq_is_named_by_an_eviction_notice(tmp_path: Path) -> None:
    """The collector never acknowledges past a missing seq: each seq the outbox evicts is
    named by a notice in a later batch, and batches carrying notices are never evicted."""
    box = await open_box(tmp_path / "outbox.db", max_bytes=15_000)
    for i in range(40):
        t = T0 + i * 1000
        await box.append(bulk(t, n=50), t)
        await box.append(urgent(t), t)
        await box.close_due_batches(t, force=True)
    await box.close_due_batches(T0 + 50_000, force=True)
    stats = await box.stats(T0)
    due = await box.due_for_publish(limit=1000, resend_after_ms=0)
    held = {b.seq for b in due}
    named: set[int] = set()
    records = 0
    for b in due:
        for event in decode_batch(b.payload).events:
            noticed = noticed_seqs(event)
            if noticed is not None:
                assert noticed[0] == b.epoch == box.epoch
                named.update(range(noticed[1], noticed[2] + 1))
                records += int(str(event.attrs["records"]))
    assert named
    assert held | named == set(range(1, stats.next_seq))  # no seq left missing
    assert not held & named
    assert records == stats.counters["evicted_records"]
    await box.close()


async def test_events_are_evicted_last_when_only_events_remain(tmp_path: Path) -> None:
    box = await open_box(tmp_path / "outbox.db", max_bytes=2_000)
    for i in range(30):
        await box.append(urgent(T0 + i), T0 + i)
        await box.close_due_batches(T0 + i, force=True)
    stats = await box.stats(T0)
    assert stats.counters["evicted_event"] > 0
    due = await box.due_for_publish(limit=100, resend_after_ms=0)
    assert due[-1].seq == 30  # the newest survive
    await box.close()


@pytest.mark.parametrize("kind", ["garbage", "foreign", "wrong_version"])
async def test_unusable_file_is_moved_aside_and_a_new_epoch_starts(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.db"
    if kind == "garbage":
        path.write_bytes(os.urandom(8192))
    elif kind == "foreign":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE stuff(x)")
        db.close()
    else:
        box = await open_box(path)
        await box.close()
        db = sqlite3.connect(path)
        db.execute("PRAGMA user_version=99")
        db.close()
    with caplog.at_level(logging.ERROR, logger="edge_agent.outbox"):
        box = await open_box(path)
    assert "moved aside" in caplog.text
    assert len(moved_aside(tmp_path)) == 1
    assert box.next_seq == 1
    await box.append(urgent(T0), T0)
    assert await box.close_due_batches(T0, force=True) == 1
    await box.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


async def test_damaged_pages_are_detected_at_open(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = await open_box(path)
    for i in range(20):
        await box.append(bulk(T0 + i, n=200), T0 + i)
    old_epoch = box.epoch
    await box.close()
    data = bytearray(path.read_bytes())
    data[4096:8192] = os.urandom(4096)  # scribble over the second page
    path.write_bytes(bytes(data))
    box = await open_box(path)
    assert box.epoch != old_epoch
    await box.close()


async def test_read_status_while_open_and_read_only(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    clock = FakeMonotonic()
    box = await open_box(path, monotonic=clock)
    await box.append(health(T0, cpu=0.25), T0)
    await box.append(urgent(T0 + 100), T0 + 100)
    clock.advance_ms(5_000)  # the urgent event is due, the health snapshot not yet
    await box.close_due_batches(T0 + 5_000)
    status = read_status(path, T0 + 6_000)
    assert status["epoch"] == box.epoch
    assert status["pending_batches"] == 1
    assert status["staged_records"] == 1
    # The urgent batch's record, not the staged snapshot: staged records are no backlog.
    assert status["oldest_pending_age_ms"] == 5_900
    assert status["highest_acked_seq"] == 0
    assert status["health"] == {"time_ms": T0, "values": {"can_errors": 0, "cpu": 0.25}}
    # The daemon keeps writing while a status reader looks.
    await box.append(urgent(T0 + 200), T0 + 200)
    await box.close()
    assert read_status(path, T0)["staged_records"] == 2
    with pytest.raises(OutboxError, match="no outbox"):
        read_status(tmp_path / "missing.db", T0)


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from edge_agent.outbox import Outbox, Records
    from protocol.records import Event, SignalSeries

    async def main(path: str) -> None:
        box = await Outbox.open(Path(path), fleet_id="fleet-1", vehicle_id="taxi-42")
        print("ready", flush=True)
        t = 1_700_000_000_000 + box.next_seq * 100_000
        i = 0
        while True:
            i += 1
            t += 100
            events = (Event("fcw", t, None, None, None),) if i % 3 == 0 else ()
            series = SignalSeries("speed", (t, t + 10), (float(i), 1.0))
            await box.append(Records(events=events, signals=(series,)), t, str(i).encode())
            await box.close_due_batches(t, force=i % 2 == 0)
            if i % 5 == 0:
                due = await box.due_for_publish(limit=5, resend_after_ms=0)
                await box.mark_published([(b.epoch, b.seq) for b in due])
                await box.acknowledge(box.epoch, box.next_seq - 8)

    asyncio.run(main(sys.argv[1]))
    """
)


def test_kill_9_leaves_a_clean_contiguous_outbox(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    rng = random.Random(1234)
    for _ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.05, 0.4))  # let it append, close, publish, ack a while
        assert child.poll() is None, "the child stopped on its own"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        child.stdout.close()

    status = read_status(path, T0)  # the dead writer's file, as `edge-agent status` sees it
    epoch = asyncio.run(_contiguity(path, status))
    assert status["epoch"] != epoch  # killed: the reopened file issues under a new epoch
    assert moved_aside(tmp_path) == []


async def _contiguity(path: Path, status: dict[str, object]) -> int:
    box = await open_box(path)
    stats = await box.stats(T0)
    assert stats.counters["epoch_restarts"] == 6  # one per kill, none for the first create
    due = await box.due_for_publish(limit=100_000, resend_after_ms=0)
    by_epoch: dict[int, list[int]] = {}
    for stored in due:
        header = decode_batch(stored.payload).header
        assert (header.epoch, header.seq) == (stored.epoch, stored.seq)
        by_epoch.setdefault(stored.epoch, []).append(stored.seq)
    assert box.epoch not in by_epoch  # nothing issued since the reopen
    # The last child's epoch: everything from its last ack to its last close is held.
    assert int(str(status["next_seq"])) > 5, "the last child never got far enough"
    last = by_epoch[int(str(status["epoch"]))]
    assert sorted(last) == list(
        range(int(str(status["highest_acked_seq"])) + 1, int(str(status["next_seq"])))
    )
    for seqs in by_epoch.values():  # earlier epochs: one unbroken run each
        assert sorted(seqs) == list(range(min(seqs), max(seqs) + 1))
    checkpoint = await box.load_checkpoint()
    assert checkpoint is not None
    assert int(checkpoint) > 0
    await box.close()
    return box.epoch


# The schema-1 layout as released, to build a file the way the previous agent left it.
_V1_SCHEMA = (
    """CREATE TABLE staged(id INTEGER PRIMARY KEY, lane TEXT NOT NULL,
        staged_ms INTEGER NOT NULL, first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL,
        n_records INTEGER NOT NULL, size INTEGER NOT NULL, body BLOB NOT NULL)""",
    """CREATE TABLE batches(seq INTEGER PRIMARY KEY, channel TEXT NOT NULL,
        priority INTEGER NOT NULL, first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL,
        n_records INTEGER NOT NULL, size INTEGER NOT NULL, published_ms INTEGER,
        publish_count INTEGER NOT NULL DEFAULT 0, payload BLOB NOT NULL)""",
    "CREATE INDEX batches_publish_order ON batches(priority DESC, seq)",
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
)


async def test_a_schema_1_outbox_is_migrated_and_its_batches_still_go_out(
    tmp_path: Path,
) -> None:
    """An agent upgraded over a backlog: the old batches keep their epoch and seqs, are
    checked by decoding (they have no checksum), and an ack for that epoch deletes them;
    new batches start a new epoch (the old file has no clean-close marker)."""
    from protocol import Batch, encode_batch

    path = tmp_path / "outbox.db"
    old_epoch = 0x0123456789ABCDEF
    payloads = [
        encode_batch(
            Batch.build(fleet_id=FLEET, vehicle_id=VEHICLE, epoch=old_epoch, seq=seq,
                        sent_ms=T0, events=urgent(T0 + seq).events)
        )
        for seq in (1, 2)
    ]  # fmt: skip
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        for statement in _V1_SCHEMA:
            db.execute(statement)
        db.execute(f"PRAGMA application_id={APPLICATION_ID}")
        db.execute("PRAGMA user_version=1")
        db.executemany(
            "INSERT INTO meta(key, value) VALUES(?, ?)",
            [("epoch", str(old_epoch)), ("next_seq", 3), ("acked_seq", 0)],
        )
        db.executemany(
            "INSERT INTO batches(seq, channel, priority, first_ms, last_ms, n_records, size,"
            " published_ms, publish_count, payload) VALUES(?, 'event', 2, ?, ?, 1, ?, ?, ?, ?)",
            [
                (seq, T0 + seq, T0 + seq, len(p), T0 if seq == 1 else None, seq == 1, p)
                for seq, p in ((1, payloads[0]), (2, payloads[1]))
            ],
        )
        db.commit()
    finally:
        db.close()
    box = await open_box(path)
    try:
        due = await box.due_for_publish(limit=10, resend_after_ms=0)
        assert [(b.epoch, b.seq, b.payload) for b in due] == [
            (old_epoch, 1, payloads[0]),
            (old_epoch, 2, payloads[1]),
        ]
        await box.append(urgent(T0 + 10), T0 + 10)
        await box.close_due_batches(T0 + 10, force=True)
        assert box.epoch != old_epoch
        assert await box.acknowledge(old_epoch, 2) == 2
        (new,) = await box.due_for_publish(limit=10, resend_after_ms=0)
        assert (new.epoch, new.seq) == (box.epoch, 1)
    finally:
        await box.close()


async def test_backlog_age_counts_closed_unacknowledged_batches_only(tmp_path: Path) -> None:
    box = await open_box(tmp_path / "o.db")
    await box.append(health(T0), T0)  # staged: waits for its lane's batch age
    assert (await box.stats(T0 + 45_000)).oldest_pending_age_ms == 0
    await box.close_due_batches(T0 + 45_000, force=True)
    assert (await box.stats(T0 + 45_000)).oldest_pending_age_ms == 45_000
    await box.close()
