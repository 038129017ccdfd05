"""Between append and publish, a record is turned into wire form and checked once; a
staged chunk damaged on disk is dropped and counted, not sent."""

from __future__ import annotations

import sqlite3
import sys
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import msgpack
import pytest

import edge_agent.outbox
from edge_agent.chunks import CHUNK_MARK
from edge_agent.outbox import Outbox, Records
from protocol import body as protocol_body
from protocol import checks, decode_batch
from protocol.body import BODY_KEYS
from protocol.records import Event, SignalSeries

T0 = 1_700_000_000_000


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts body checks (the body map's own field check opens every full check) and
    conversions of records to wire form, wherever a module imported them."""
    counted: Counter[str] = Counter()
    fields = checks.fields

    def counting_fields(value: object, field: str, keys: frozenset[str]) -> dict[str, object]:
        if keys == BODY_KEYS:
            counted["checked"] += 1
        return fields(value, field, keys)

    to_wire = protocol_body.body_to_wire

    def counting_to_wire(*args: object) -> dict[str, object]:
        counted["to wire"] += 1
        return to_wire(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(checks, "fields", counting_fields)
    assert edge_agent.outbox is not None  # the outbox and what it uses are imported
    for module in list(sys.modules.values()):
        if getattr(module, "body_to_wire", None) is to_wire:
            monkeypatch.setattr(module, "body_to_wire", counting_to_wire)
    return counted


async def test_append_checks_once_and_close_reuses_its_bytes(
    tmp_path: Path, calls: Counter[str]
) -> None:
    box = await Outbox.open(tmp_path / "outbox.db", fleet_id="f", vehicle_id="v")
    try:
        for second in range(3):  # three chunks, joined into one batch
            t = T0 + second * 1000
            series = SignalSeries("speed", tuple(range(t, t + 10)), (1.5,) * 10, "km/h")
            sign = Event("tsr_sign", t, 30.0, None, None, {"limit": 50})
            await box.append(Records(signals=(series,), events=(sign,)), t)
        assert calls == Counter({"checked": 3, "to wire": 3})
        assert await box.close_due_batches(T0 + 3000, force=True) == 1
        (batch,) = await box.due_for_publish(limit=10, resend_after_ms=0)
        assert calls == Counter({"checked": 3, "to wire": 3})  # closing checked nothing again
    finally:
        await box.close()
    decoded = decode_batch(batch.payload)
    assert decoded.header.counts.signal_samples == 30
    assert [e.time_ms for e in decoded.events] == [T0, T0 + 1000, T0 + 2000]


def _renamed(blob: bytes) -> bytes:
    return blob.replace(b"speed", b"spEed")  # still valid msgpack: only the checksum tells


def _unframed(blob: bytes) -> bytes:
    return blob[len(CHUNK_MARK) + 4 :]  # as staged before chunks had a checksum


def _foreign(blob: bytes) -> bytes:
    return bytes(msgpack.packb({"sig": 1}))


@pytest.mark.parametrize(("damage", "dropped"), [(_renamed, 2), (_foreign, 2), (_unframed, 0)])
async def test_a_damaged_staged_chunk_is_dropped_and_counted_and_the_rest_goes_out(
    tmp_path: Path, damage: Callable[[bytes], bytes], dropped: int
) -> None:
    path = tmp_path / "outbox.db"
    box = await Outbox.open(path, fleet_id="f", vehicle_id="v")
    for second in range(3):
        t = T0 + second * 1000
        await box.append(Records(signals=(SignalSeries("speed", (t, t + 1), (1, 2), ""),)), t)
    await box.close()
    with closing(sqlite3.connect(path)) as db, db:
        (blob,) = db.execute("SELECT body FROM staged WHERE first_ms=?", (T0 + 1000,)).fetchone()
        db.execute("UPDATE staged SET body=? WHERE first_ms=?", (damage(blob), T0 + 1000))
    box = await Outbox.open(path, fleet_id="f", vehicle_id="v")
    try:
        await box.close_due_batches(T0 + 3000, force=True)
        due = await box.due_for_publish(limit=10, resend_after_ms=0)
        stats = await box.stats(T0 + 3000)
    finally:
        await box.close()
    sent = [t for b in due for s in decode_batch(b.payload).signals for t in s.times_ms]
    lost = [T0 + 1000, T0 + 1001] if dropped else []
    appended = [T0 + second * 1000 + ms for second in range(3) for ms in (0, 1)]
    assert sent == [t for t in appended if t not in lost]
    assert [b.seq for b in due] == list(range(1, len(due) + 1))
    assert stats.counters.get("dropped_invalid", 0) == dropped
    assert stats.staged_records == 0
