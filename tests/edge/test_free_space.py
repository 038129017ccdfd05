"""The free-space reading behind the outbox's reserve guard (edge_agent.free_space): how
often it reads, and that a reading is never trusted across the reserve. The guard acting
on a real disk that fills is in test_outbox_disk.py."""

from __future__ import annotations

from edge_agent.free_space import FreeSpaceGauge

MiB = 1 << 20
KiB = 1 << 10
RESERVE = 32 * MiB


class Disk:
    """Free space as statvfs would report it, and how often it was asked."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.reads = 0

    def __call__(self) -> int | None:
        self.reads += 1
        return self.free


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _gauge(disk: Disk, clock: Clock, every_bytes: int = 256 * KiB) -> FreeSpaceGauge:
    return FreeSpaceGauge(read=disk, clock=clock, every_s=5.0, every_bytes=every_bytes)


def test_one_reading_per_period_less_what_was_written_since() -> None:
    disk, clock = Disk(100 * MiB), Clock()
    gauge = _gauge(disk, clock)
    assert gauge.free_bytes(1000, RESERVE) == 100 * MiB
    for n in range(1, 5):  # one write a second, as the agent's flush
        clock.now += 1
        assert gauge.free_bytes(1000, RESERVE) == 100 * MiB - n * 1000
    assert disk.reads == 1
    disk.free = 90 * MiB  # others took 10 MiB meanwhile: seen at the next reading
    clock.now += 1  # 5 s since the reading
    assert gauge.free_bytes(1000, RESERVE) == 90 * MiB
    assert (disk.reads, gauge.reads) == (2, 2)


def test_a_reading_is_taken_again_after_enough_bytes_without_time_passing() -> None:
    disk, clock = Disk(100 * MiB), Clock()
    gauge = _gauge(disk, clock)
    gauge.free_bytes(200 * KiB, RESERVE)
    gauge.free_bytes(100 * KiB, RESERVE)  # 200 KiB written since: still the reading
    assert disk.reads == 1
    disk.free = 50 * MiB
    assert gauge.free_bytes(0, RESERVE) == 50 * MiB  # 300 KiB written since
    assert disk.reads == 2


def test_an_estimate_below_the_reserve_is_never_used_and_below_it_every_write_reads() -> None:
    disk, clock = Disk(RESERVE + 3 * MiB), Clock()
    gauge = _gauge(disk, clock, every_bytes=1 << 40)  # only the reserve decides here
    gauge.free_bytes(2 * MiB, RESERVE)
    assert gauge.free_bytes(2 * MiB, RESERVE) == RESERVE + MiB  # estimate, above the reserve
    assert disk.reads == 1
    disk.free = RESERVE - MiB  # the writes took it below: 4 MiB written, estimate crosses
    assert gauge.free_bytes(0, RESERVE) == RESERVE - MiB
    assert disk.reads == 2
    for n in range(3):  # below the reserve: afresh at every write, whatever the clock
        assert gauge.free_bytes(10, RESERVE) == RESERVE - MiB
        assert disk.reads == 3 + n


def test_after_a_write_refused_for_space_the_next_call_reads() -> None:
    disk, clock = Disk(100 * MiB), Clock()
    gauge = _gauge(disk, clock)
    gauge.free_bytes(0, RESERVE)
    gauge.forget()
    disk.free = 0
    assert gauge.free_bytes(0, RESERVE) == 0
    assert disk.reads == 2


def test_an_unknown_free_space_is_asked_again_each_time() -> None:
    clock = Clock()
    calls: list[None] = []

    def unknown() -> int | None:
        calls.append(None)
        return None

    gauge = FreeSpaceGauge(read=unknown, clock=clock)
    assert gauge.free_bytes(0, RESERVE) is None
    assert gauge.free_bytes(0, RESERVE) is None
    assert len(calls) == 2
