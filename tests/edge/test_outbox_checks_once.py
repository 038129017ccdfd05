"""Between append and publish, a record is turned into wire form and checked once."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

import edge_agent.outbox
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
