"""The writer's close deadlines: one per lane and batch age, not one per write, and the
records a close leaves staged get a deadline of their own (real outbox, stepped clocks)."""

from __future__ import annotations

from pathlib import Path

from edge_agent.batching import BatchPolicy
from edge_agent.outbox import Outbox, Records
from edge_agent.writer import CLOSE_FALLBACK_S, CLOSE_MARGIN_S, OutboxWriter
from protocol.records import Event, SignalSeries

T0 = 1_770_000_000_000


class StepClock:
    """Monotonic and wall time moved by the test only."""

    def __init__(self) -> None:
        self.t = 100.0

    def monotonic(self) -> float:
        return self.t

    def wall_ms(self) -> int:
        return T0 + round(self.t * 1000)

    def raw_wall_ms(self) -> int:
        return self.wall_ms()

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def _signals(i: int) -> Records:
    return Records(signals=(SignalSeries("WHL_SPD11.WHL_SPD_FL", (T0 + i,), (float(i),)),))


async def _writer(tmp_path: Path, policy: BatchPolicy | None = None) -> OutboxWriter:
    clock = StepClock()
    outbox = await Outbox.open(
        tmp_path / "o.db", fleet_id="f", vehicle_id="v", monotonic=clock.monotonic, policy=policy
    )
    return OutboxWriter(outbox, clock)


async def test_a_write_each_second_sets_one_bulk_deadline_per_batch_age(tmp_path: Path) -> None:
    writer = await _writer(tmp_path)
    clock = writer.clock
    assert isinstance(clock, StepClock)
    deadlines: list[float] = []
    writer.on_deadline = deadlines.append
    start = clock.t
    for i in range(10):  # ten flushes, one a second: the bulk lane's age is 10 s
        await writer.store(_signals(i), None)
        clock.t += 1.0
    assert deadlines == [start + 10.0 + CLOSE_MARGIN_S]
    clock.t = deadlines[0]
    closed, next_at = await writer.close_due(clock.t)
    assert closed == 1
    assert next_at == clock.t + CLOSE_FALLBACK_S  # nothing left staged
    await writer.store(_signals(11), None)  # the lane is empty again: a new deadline
    assert deadlines[1:] == [clock.t + 10.0 + CLOSE_MARGIN_S]
    await writer.outbox.close()


async def test_each_lane_gets_its_own_deadline(tmp_path: Path) -> None:
    writer = await _writer(tmp_path)
    clock = writer.clock
    assert isinstance(clock, StepClock)
    deadlines: list[float] = []
    writer.on_deadline = deadlines.append
    event = Event("fcw", T0, 50.0, None, None, {})
    await writer.store(Records(events=(event,), signals=_signals(0).signals), None)
    await writer.store(_signals(1), None)
    assert sorted(round(d - clock.t, 3) for d in deadlines) == [
        round(1.0 + CLOSE_MARGIN_S, 3),
        round(10.0 + CLOSE_MARGIN_S, 3),
    ]
    await writer.outbox.close()


async def test_records_left_staged_by_a_size_close_get_a_deadline(tmp_path: Path) -> None:
    """A lane closed for size keeps its last partial group staged: the closer comes back
    when that group is due by age, not after the fallback."""
    writer = await _writer(tmp_path, BatchPolicy(max_records=3))
    clock = writer.clock
    assert isinstance(clock, StepClock)
    start = clock.t
    for i in range(4):  # 3 close for size, 1 stays
        await writer.store(_signals(i), None)
        clock.t += 1.0
    closed, next_at = await writer.close_due(clock.t)
    assert closed == 1
    assert abs(next_at - (start + 10.0 + CLOSE_MARGIN_S)) < 0.01  # the lane's first deadline
    clock.t = next_at
    closed, next_at = await writer.close_due(clock.t)
    assert closed == 0  # the record left staged was written 3 s after the first
    assert abs(next_at - (start + 3.0 + 10.0 + CLOSE_MARGIN_S)) < 0.01  # not the fallback
    clock.t = next_at
    closed, _ = await writer.close_due(clock.t)
    assert closed == 1
    await writer.outbox.close()
