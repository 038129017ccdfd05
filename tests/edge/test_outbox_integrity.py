"""Damage that passes SQLite's quick_check, made by flipping bytes of real outbox files
(closed, or left by a killed writer): nothing may be lost silently, no (epoch, seq) may be
issued twice, and every loss is logged and counted."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from edge_agent.outbox import Outbox, Records
from edge_agent.uplink import Uplink
from protocol import decode_batch, peek_identity
from protocol.records import Event
from tests.support.scripted_link import ScriptedLink, connector_for, until, uplink_settings

T0 = 1_760_000_000_000
FLEET, VEHICLE = "test-fleet", "taxi-1"
ROOT = Path(__file__).resolve().parents[2]


async def open_box(path: Path) -> Outbox:
    return await Outbox.open(path, fleet_id=FLEET, vehicle_id=VEHICLE)


def events(t: int, n: int = 3) -> Records:
    return Records(events=tuple(Event("fcw", t + i, 50.0, None, None, {}) for i in range(n)))


async def issue(box: Outbox, batches: int, t: int = T0) -> None:
    for i in range(batches):
        await box.append(events(t + 10 * i), t + 10 * i)
        await box.close_due_batches(t + 10 * i, force=True)


def flip(path: Path, offset: int, mask: int = 0x80) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ mask]))


def offset_of(path: Path, needle: bytes) -> int:
    data = path.read_bytes()
    assert data.count(needle) == 1, f"{needle!r} found {data.count(needle)} times"
    return data.index(needle)


def identities(path: Path) -> set[tuple[int, int]]:
    """(epoch, seq) of every stored batch, read from the payloads themselves."""
    with closing(sqlite3.connect(path)) as db:
        return {
            (i.epoch, i.seq)
            for i in (peek_identity(bytes(p)) for (p,) in db.execute("SELECT payload FROM batches"))
        }


def quick_check_passes(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA quick_check").fetchall() == [("ok",)]


async def test_a_flipped_next_seq_drops_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "o.db"
    box = await open_box(path)
    await issue(box, 3)
    sent = identities(path)
    await box.close()
    # meta is (key, value): the one-byte integer 4 follows the key's text.
    flip(path, offset_of(path, b"next_seq\x04") + len(b"next_seq"))
    quick_check_passes(path)
    with caplog.at_level(logging.ERROR, logger="edge_agent.outbox"):
        box = await open_box(path)
    await issue(box, 2, T0 + 1000)
    stats = await box.stats(T0)
    assert stats.counters.get("dropped_invalid", 0) == 0  # new records still encode
    assert "OUTBOX META DAMAGED" in caplog.text
    assert stats.pending_batches == 5
    assert stats.counters["meta_repairs"] == 1
    await box.close()
    stored = identities(path)
    assert sent <= stored
    assert len(stored) == 5  # the new batches did not take any seq issued before


@pytest.mark.parametrize("copies", ["meta", "meta_and_epochs_table"])
async def test_a_flipped_epoch_still_takes_acks(tmp_path: Path, copies: str) -> None:
    path = tmp_path / "o.db"
    box = await open_box(path)
    await issue(box, 3)
    epoch = box.epoch
    await box.close()
    digits = str(epoch).encode()
    data = path.read_bytes()
    # The last digit, moved by one: still a valid epoch, but the wrong one.
    targets = [offset_of(path, b"epoch" + digits) + len(b"epoch" + digits) - 1]
    if copies != "meta":
        targets += [i + len(digits) - 1 for i in range(len(data)) if data.startswith(digits, i)]
    for offset in set(targets):
        flip(path, offset, 0x01)
    quick_check_passes(path)
    box = await open_box(path)
    # The collector acknowledges what the payloads say: that must delete them.
    assert await box.acknowledge(epoch, 3) == 3
    stats = await box.stats(T0)
    assert stats.pending_batches == 0
    assert stats.counters["meta_repairs"] == 1
    assert box.epoch != epoch  # new batches: a new epoch, the old seqs are not reused
    await box.close()


async def test_a_damaged_payload_is_not_published_and_is_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "o.db"
    box = await open_box(path)
    await issue(box, 3)
    await box.close()
    with closing(sqlite3.connect(path)) as db:
        (payload,) = db.execute(
            "SELECT payload FROM batches ORDER BY seq LIMIT 1 OFFSET 1"
        ).fetchone()
    flip(path, offset_of(path, bytes(payload)) + len(payload) // 2)
    quick_check_passes(path)
    box = await open_box(path)
    link = ScriptedLink()
    uplink = Uplink(uplink_settings(), box, connector=connector_for(link))  # type: ignore[arg-type]
    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="edge_agent.outbox"):
        async with asyncio.TaskGroup() as tg:
            tg.create_task(uplink.run(stop))
            await until(lambda: len(link.published) >= 2, 5)
            await asyncio.sleep(0.2)
            stop.set()
    assert sorted(seq for _, seq in link.published) == [1, 3]  # seq 2 never left
    stats = await box.stats(T0)
    assert stats.counters["dropped_corrupt"] == 3  # its three events, counted
    assert stats.pending_batches == 2
    assert "OUTBOX BATCHES DAMAGED" in caplog.text
    await box.close()


# A writer that prints each (epoch, seq) as soon as its batch is committed: the uplink
# may publish it from then on, so the collector may hold it.
WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from edge_agent.outbox import Outbox, Records
    from protocol.records import Event

    async def main(path: str) -> None:
        box = await Outbox.open(Path(path), fleet_id="test-fleet", vehicle_id="taxi-1")
        t = 1_760_000_000_000
        for i in range(40):
            t += 100
            await box.append(Records(events=(Event("fcw", t, None, None, None),)), t)
            first = box.next_seq
            await box.close_due_batches(t, force=True)
            for seq in range(first, box.next_seq):
                print(box.epoch, seq, flush=True)
        print("done", flush=True)
        await asyncio.sleep(60)

    asyncio.run(main(sys.argv[1]))
    """
)


def test_a_wal_damaged_after_a_kill_never_reissues_a_seq(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, cwd=ROOT
    )
    assert child.stdout is not None
    lines = [line.decode().split() for line in iter(child.stdout.readline, b"done\n")]
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    child.stdout.close()
    issued = {(int(e), int(s)) for e, s in lines}
    assert len(issued) == 40
    wal = Path(f"{path}-wal")
    # A damaged frame in the WAL's second half: SQLite ignores it and every later commit.
    flip(wal, wal.stat().st_size * 2 // 3)
    quick_check_passes(path)
    survived = identities(path)
    assert survived < issued, "the damage should have rolled back some commits"

    asyncio.run(_reopen_and_issue(path, 5))
    new = identities(path) - survived
    assert len(new) == 5
    assert not new & issued  # no (epoch, seq) the collector may hold is issued again
    with closing(sqlite3.connect(path)) as db:
        kinds = {
            e.type
            for (p,) in db.execute("SELECT payload FROM batches")
            for e in decode_batch(bytes(p)).events
        }
    assert kinds == {"fcw"}


async def _reopen_and_issue(path: Path, batches: int) -> None:
    box = await open_box(path)
    await issue(box, batches, T0 + 100_000)
    await box.close()
