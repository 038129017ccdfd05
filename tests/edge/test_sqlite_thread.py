"""The outbox's writer thread (edge_agent.sqlite_thread): every write transaction is one
hand-off to a thread of its own, which runs it whole."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from edge_agent.errors import OutboxError
from edge_agent.outbox import Records
from edge_agent.sqlite_thread import SqliteThread
from protocol.records import Event, SignalSeries
from tests.support.outbox_box import FakeMonotonic, open_box

T0 = 1_700_000_000_000
_R = TypeVar("_R")


def _no_setup(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA busy_timeout=1000")


async def test_work_runs_on_one_thread_of_its_own(tmp_path: Path) -> None:
    writer = await SqliteThread.open(tmp_path / "x.db", _no_setup)
    try:
        ids = {await writer.run(lambda _db: threading.get_ident()) for _ in range(5)}
        assert len(ids) == 1
        assert threading.get_ident() not in ids
        await writer.run(lambda db: db.execute("CREATE TABLE t(x)"))
        assert await writer.run(lambda db: db.execute("SELECT COUNT(*) FROM t").fetchone()) == (0,)
    finally:
        await writer.close()


async def test_an_error_comes_back_to_the_caller_and_the_thread_goes_on(tmp_path: Path) -> None:
    writer = await SqliteThread.open(tmp_path / "x.db", _no_setup)
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table: missing"):
            await writer.run(lambda db: db.execute("SELECT * FROM missing"))
        assert await writer.run(lambda db: db.execute("SELECT 7").fetchone()) == (7,)
    finally:
        await writer.close()


async def test_closed_it_refuses_work_and_closing_twice_is_harmless(tmp_path: Path) -> None:
    writer = await SqliteThread.open(tmp_path / "x.db", _no_setup)
    await writer.close()
    await writer.close()
    with pytest.raises(OutboxError, match="closed"):
        await writer.run(lambda db: db.execute("SELECT 1"))


async def test_a_failing_setup_leaves_no_connection(tmp_path: Path) -> None:
    def bad(db: sqlite3.Connection) -> None:
        db.execute("PRAGMA no_such_thing = (")

    with pytest.raises(sqlite3.OperationalError):
        await SqliteThread.open(tmp_path / "x.db", bad)


async def test_each_outbox_write_transaction_is_one_hand_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = await open_box(tmp_path / "o.db", monotonic=FakeMonotonic())
    writer = box._writer
    assert writer is not None
    calls: list[str] = []
    run = writer.run

    async def counted(work: Callable[[sqlite3.Connection], _R]) -> _R:
        calls.append(getattr(work, "__name__", "work"))
        return await run(work)

    monkeypatch.setattr(writer, "run", counted)
    try:
        times = tuple(T0 + 100 * i for i in range(10))
        series = SignalSeries("speed", times, tuple(float(i) for i in range(10)), "km/h")
        fcw = Event("fcw", T0, 52.0, None, None, {"ttc_s": 1.1})
        records = Records(events=(fcw,), signals=(series,))
        await box.append(records, T0, b"checkpoint")
        assert len(calls) == 1
        assert await box.close_due_batches(T0, force=True) == 2  # urgent and bulk: one transaction
        assert len(calls) == 2
        due = await box.due_for_publish(limit=10, resend_after_ms=0)  # a read: not the writer
        assert len(calls) == 2
        await box.mark_published([(b.epoch, b.seq) for b in due])
        assert len(calls) == 3
        assert await box.acknowledge(box.epoch, 2) == 2
        assert len(calls) == 4
    finally:
        await box.close()
