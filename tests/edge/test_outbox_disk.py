"""A full disk under the outbox: eviction for free space, records held in memory while
nothing can be written, the agent running on, and health/status saying so.

The disk is a real tmpfs mounted for the test (root only) and filled by a ballast file.
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.batching import (
    CAUSE_CAP,
    CAUSE_SPACE,
    EVICTED_FOR_SPACE,
    PRIORITY_EVENT,
    SPACE_EVICTS_BELOW,
    URGENT_EVENT_TYPES,
    Candidate,
    choose_victims,
    eviction_need,
)
from edge_agent.config import load_config, parse_config
from edge_agent.errors import ConfigError
from edge_agent.free_space import STATVFS_EVERY_BYTES, STATVFS_EVERY_S
from edge_agent.holding import HoldingArea
from edge_agent.outbox import Outbox, Records, effective_reserve, filesystem_free_bytes
from edge_agent.outbox_status import format_human, headline
from harness import consumer
from harness.agent import MQTT_TUNING, ROOT, Setup, agent_cmd, expected, replay_config_toml, status
from harness.mosquitto import MosquittoHarness
from protocol import EVICTION_NOTICE, decode_batch
from protocol.contracts import DISK_FREE_BYTES, DISK_FULL, DISK_RESERVE_BYTES, OUTBOX_WRITE_FAILURES
from protocol.records import Event, Health, SignalSeries
from tests.support.outbox_box import FakeMonotonic

T0 = 1_700_000_000_000
MiB = 1 << 20


# --- a small real disk ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``small_disk(bytes)`` mounts a tmpfs of that size and returns its directory."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill a real filesystem needs root")
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            check=True,
            timeout=10,
        )
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=10)


def fill(directory: Path, leave_bytes: int = 0) -> Path:
    """A ballast file taking all but ``leave_bytes`` of the filesystem's free space."""
    ballast = directory / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1 << 9):
            zeros = bytes(chunk)
            while (filesystem_free_bytes(ballast) or 0) - chunk >= leave_bytes:
                try:
                    os.write(fd, zeros)
                except OSError:  # ENOSPC: this chunk size no longer fits
                    break
    finally:
        os.close(fd)
    return ballast


# --- pure cores -----------------------------------------------------------------------------


def test_eviction_need_cap_and_free_space() -> None:
    roomy = {"free_bytes": 100 * MiB, "reserve_bytes": 32 * MiB, "reusable_bytes": 0}
    assert eviction_need(stored_bytes=10, max_bytes=100, **roomy).nbytes == 0
    cap = eviction_need(stored_bytes=150, max_bytes=100, **roomy)
    assert (cap.nbytes, cap.cause) == (50, CAUSE_CAP)
    # Below the reserve: evict until the file has room inside, not to restore the
    # reserve (a file does not shrink, so that would only lose data).
    low = {"free_bytes": 5 * MiB, "reserve_bytes": 32 * MiB}
    need = eviction_need(stored_bytes=10, max_bytes=100, reusable_bytes=0, room_bytes=MiB, **low)
    assert (need.nbytes, need.cause) == (MiB, CAUSE_SPACE)
    some = eviction_need(
        stored_bytes=10, max_bytes=100, reusable_bytes=MiB // 4, room_bytes=MiB, **low
    )
    assert some.nbytes == MiB - MiB // 4
    enough = eviction_need(
        stored_bytes=10, max_bytes=100, reusable_bytes=MiB, room_bytes=MiB, **low
    )
    assert enough.nbytes == 0
    # The larger of the two wins and names the cause; an unknown free figure never evicts.
    both = eviction_need(
        stored_bytes=100 + 2 * MiB, max_bytes=100, reusable_bytes=0, room_bytes=MiB, **low
    )
    assert (both.nbytes, both.cause) == (2 * MiB, CAUSE_CAP)
    unknown = eviction_need(
        stored_bytes=10, max_bytes=100, free_bytes=None, reserve_bytes=MiB, reusable_bytes=0
    )
    assert unknown.nbytes == 0


def test_free_space_never_evicts_urgent_events() -> None:
    batches = [Candidate(PRIORITY_EVENT, 1, 500), Candidate(0, 2, 300), Candidate(1, 3, 300)]
    assert [c.seq for c in choose_victims(batches, 10_000)] == [2, 3, 1]
    spared = choose_victims(batches, 10_000, below_priority=SPACE_EVICTS_BELOW)
    assert [c.seq for c in spared] == [2, 3]


def _event(kind: str, t: int) -> Event:
    return Event(kind, t, 50.0, None, None)


def _series(t: int, n: int) -> SignalSeries:
    return SignalSeries("speed", tuple(range(t, t + n)), tuple(1.0 for _ in range(n)), "km/h")


def test_holding_area_drops_cheapest_first_and_keeps_the_newest_urgent_events() -> None:
    held = HoldingArea(lambda kind: kind in URGENT_EVENT_TYPES, max_records=10)
    assert held.add(Records(signals=(_series(T0, 4),), health=(Health(T0, {"a": 1}),))) == 0
    assert held.add(Records(events=(_event("tsr_sign", T0 + 1),)), b"cp1") == 0
    assert len(held) == 6
    # Nine urgent events: samples go first, then health, then the other event, then the
    # oldest urgent ones.
    urgent = tuple(_event("fcw", T0 + 10 + i) for i in range(9))
    assert held.add(Records(events=urgent), b"cp2") == 5
    assert held.add(Records(events=(_event("ldw_left", T0 + 100),))) == 1
    assert (len(held), held.dropped) == (10, 6)
    records, checkpoint = held.take()
    assert checkpoint == b"cp2"  # the newest checkpoint goes with the records
    assert [e.time_ms for e in records.events] == [T0 + 10 + i for i in range(9)] + [T0 + 100]
    assert not records.signals
    assert not records.health
    assert len(held) == 0
    assert held.take() == (Records(), None)


def test_reserve_is_configurable_with_a_default_and_checked() -> None:
    base: dict[str, object] = {
        "vehicle": {"id": "t", "fleet": "f"},
        "bus": [{"name": "c", "interface": "x", "channel": "y"}],
    }
    assert parse_config(base, "agent.toml").outbox.reserve_bytes == 32 * MiB
    two = parse_config({**base, "outbox": {"reserve_bytes": 2 * MiB}}, "agent.toml")
    assert two.outbox.reserve_bytes == 2 * MiB
    with pytest.raises(ConfigError, match=r"outbox\.reserve_bytes") as info:
        parse_config({**base, "outbox": {"reserve_bytes": 1000}}, "agent.toml")
    assert "\n" not in str(info.value)


def _report(**values: object) -> dict[str, object]:
    return {
        "pending_batches": 1,
        "oldest_pending_age_ms": 1000,
        "health": {"time_ms": T0, "values": {"gnss_mode": 3, **values}},
        DISK_FREE_BYTES: 100 * MiB,
        DISK_RESERVE_BYTES: 32 * MiB,
    }


def test_status_headline_puts_a_full_disk_first() -> None:
    assert headline(_report(), T0) == ["OK"]
    assert headline(_report(**{DISK_FULL: True}), T0) == ["DISK FULL"]
    low = {**_report(uplink_connected=False), DISK_FREE_BYTES: 4 * MiB}
    assert headline(low, T0) == ["DISK FULL", "OFFLINE"]
    text = format_human(_report(**{DISK_FULL: True, OUTBOX_WRITE_FAILURES: 7}), T0)
    assert text.splitlines()[0].split(":", 1)[1].strip() == "DISK FULL"
    assert "7 writes failed for space" in text


# --- (a) the outbox on a small disk ----------------------------------------------------------


def _bulk(rng: random.Random, t: int) -> Records:
    # Random values: incompressible, so batch sizes are predictable.
    n = 1000
    series = SignalSeries("speed", tuple(range(t, t + n)), tuple(rng.random() for _ in range(n)))
    return Records(signals=(series,))


async def test_below_the_reserve_bulk_is_evicted_and_urgent_events_kept(
    small_disk: Callable[[int], Path],
) -> None:
    disk = small_disk(24 * MiB)
    rng = random.Random(7)
    box = await Outbox.open(
        disk / "outbox.sqlite3", fleet_id="f", vehicle_id="taxi-1", reserve_bytes=12 * MiB
    )
    try:
        t = T0
        for _ in range(200):  # about 2 MB of bulk batches, waiting for a link
            await box.append(_bulk(rng, t), t)
            await box.close_due_batches(t + 60_000, force=True)
            t += 1000
        assert (await box.stats(t)).counters == {}
        fill(disk, leave_bytes=6 * MiB)  # something else takes the disk below the reserve
        free_at_fill = filesystem_free_bytes(disk / "x")
        assert free_at_fill is not None
        sent: list[int] = []
        for _ in range(60):
            await box.append(Records(events=(_event("fcw", t),), signals=_bulk(rng, t).signals), t)
            await box.close_due_batches(t + 60_000, force=True)
            sent.append(t)
            t += 1000
        stats = await box.stats(t)
        db = box._require()
        async with db.execute("SELECT channel, payload FROM batches") as cursor:
            rows = list(await cursor.fetchall())
    finally:
        await box.close()
    assert stats.counters[EVICTED_FOR_SPACE] > 0
    assert stats.counters["evicted_bulk"] == stats.counters[EVICTED_FOR_SPACE]
    assert stats.counters.get("evicted_event", 0) == 0
    events = [e for _c, p in rows for e in decode_batch(bytes(p)).events]
    assert sorted(e.time_ms for e in events if e.type == "fcw") == sent
    # Each evicted batch is declared by an eviction notice, which stays.
    assert (
        sum(int(str(e.attrs["records"])) for e in events if e.type == EVICTION_NOTICE)
        == (stats.counters["evicted_records"])
    )
    assert any(c == "batch" for c, _p in rows), "bulk is evicted as needed, not all of it"
    # Below the reserve the outbox no longer grows: new records reuse evicted pages.
    free_after = filesystem_free_bytes(disk / "x")
    assert free_after is not None
    assert free_after > free_at_fill - MiB


# --- (b) and (c): a real agent on a full disk ----------------------------------------------

RECORDING_S = 20
FULL_FROM_S, FULL_UNTIL_S = 3.0, 11.0  # after the outbox opened


def _synthetic_drive(path: Path) -> Path:
    """Wheel speeds at 100 Hz and, on the camera bus, a warning every 0.8 s (FCW, then left,
    then right lane departure, each 0.2 s long): each type recurs after its 2 s hold-off
    (docs/events.md), so many urgent events fall into a few seconds of full disk."""
    lines = []
    t0 = 1_772_436_600.0
    for i in range(int(RECORDING_S / 0.01)):
        t = t0 + i * 0.01
        raw = int((50 + (i % 200) / 10) / 0.03125)
        lines.append(f"({t:.6f}) can1 386#{(raw.to_bytes(2, 'little') * 4).hex().upper()}")
        if i % 5 == 0:
            slot, into = divmod(i, 80)  # 0.8 s slots
            bit = (0x08, 0x02, 0x04)[slot % 3] if into < 20 else 0  # fcw, ldw left, right
            lines.append(f"({t + 0.001:.6f}) can0 700#00000000{bit:02X}000000")
    path.write_text("\n".join(lines) + "\n")
    return path


def _agent_setup(tmp: Path, disk: Path, port: int, reserve: int) -> Setup:
    recording = _synthetic_drive(tmp / "drive.log")
    text = replay_config_toml(
        vehicle="taxi-7",
        fleet="test-fleet",
        recording="drive.log",
        outbox=disk / "outbox.sqlite3",
        mqtt_port=port,
        mqtt_extra=MQTT_TUNING.format(resend_ms=3000, extra=""),
    )
    marker = "\n[mqtt]\n"
    text = text.replace(marker, f"reserve_bytes = {reserve}\n{marker}", 1)
    config = tmp / "agent.toml"
    config.write_text(text)
    assert load_config(config).outbox.reserve_bytes == reserve
    return Setup(tmp, config, recording, tmp / "collector.sqlite3")


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _urgent(events: Counter[tuple[str, int]]) -> Counter[tuple[str, int]]:
    return Counter({k: n for k, n in events.items() if k[0] in URGENT_EVENT_TYPES})


@pytest.mark.integration
def test_agent_keeps_running_on_a_full_disk_and_delivers_what_it_held(
    tmp_path: Path, small_disk: Callable[[int], Path]
) -> None:
    disk = small_disk(8 * MiB)
    with MosquittoHarness(tmp_path) as broker:
        s = _agent_setup(tmp_path, disk, broker.port, reserve=MiB)
        want = _urgent(expected(s.config, s.recording).events)
        first = min(t for _k, t in want)
        sink = consumer.spawn(broker.port, s.db)
        log = (tmp_path / "agent.log").open("wb")
        agent = subprocess.Popen(agent_cmd(s, "run"), cwd=ROOT, stderr=log)
        try:
            assert _wait((disk / "outbox.sqlite3").exists, 15), "the outbox was not opened"
            opened = time.monotonic()
            time.sleep(max(0.0, opened + FULL_FROM_S - time.monotonic()))
            ballast = fill(disk)
            assert filesystem_free_bytes(ballast) == 0
            time.sleep(max(0.0, opened + FULL_UNTIL_S - 1.0 - time.monotonic()))
            assert agent.poll() is None, "the agent exited on a full disk"
            human = subprocess.run(
                agent_cmd(s, "status", "--human"),
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
                cwd=ROOT,
            )
            assert "DISK FULL" in human.stdout.splitlines()[0], human.stdout
            time.sleep(max(0.0, opened + FULL_UNTIL_S - time.monotonic()))
            before_room = _urgent(consumer.load_results(s.db).events)
            ballast.unlink()
            # Recorded while nothing could be written (1 s margins for the clock mapping).
            meanwhile = {
                k
                for k in want
                if FULL_FROM_S + 1 <= (k[1] - first) / 1000 + 0.25 <= FULL_UNTIL_S - 1
            }

            def all_arrived() -> bool:
                return _urgent(consumer.load_results(s.db).events) == want

            arrived = _wait(all_arrived, RECORDING_S + 10)
            assert agent.poll() is None, "the agent exited"
        finally:
            if agent.poll() is None:
                agent.terminate()
            agent.wait(20)
            consumer.stop(sink)
            log.close()
    err = (tmp_path / "agent.log").read_text()
    got = _urgent(consumer.load_results(s.db).events)
    missing = want - got
    assert arrived, (
        f"{sum(missing.values())} urgent events missing: {sorted(missing)[:5]}\n{err[-3000:]}"
    )
    assert len(meanwhile) >= 8, meanwhile
    assert not meanwhile & set(before_room), "recorded while full, yet delivered before room"
    assert "DISK FULL" in err
    # A PUBACK that could not be recorded does not make the batch due again at once.
    assert err.count("cannot mark batches published") < 10, err[-3000:]
    report = status(s)
    health = report["health"]
    assert isinstance(health, dict)
    values: dict[str, object] = health["values"]
    failures = values[OUTBOX_WRITE_FAILURES]
    assert isinstance(failures, int)
    assert failures > 0
    assert values[DISK_RESERVE_BYTES] == MiB
    assert values[DISK_FULL] is False  # room again at the last snapshot


def test_the_reserve_is_at_most_half_the_filesystem() -> None:
    assert effective_reserve(32 * MiB, 8 * MiB) == 4 * MiB
    assert effective_reserve(32 * MiB, 8 * 1024 * MiB) == 32 * MiB
    assert effective_reserve(32 * MiB, None) == 32 * MiB


# --- the guard reads free space now and then (edge_agent.free_space) -------------------------


async def test_the_reserve_guard_reads_now_and_then_and_acts_once_the_disk_fills(
    small_disk: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = small_disk(24 * MiB)
    statvfs = os.statvfs
    reads: list[str] = []

    def counting_statvfs(path: str | os.PathLike[str]) -> os.statvfs_result:
        reads.append(os.fspath(path))
        return statvfs(path)

    monkeypatch.setattr(os, "statvfs", counting_statvfs)
    clock = FakeMonotonic()
    rng = random.Random(11)
    box = await Outbox.open(
        disk / "outbox.sqlite3",
        fleet_id="f",
        vehicle_id="taxi-1",
        reserve_bytes=12 * MiB,
        monotonic=clock,
    )
    try:
        t = T0
        for _ in range(50):  # about 500 kB of bulk batches, waiting for a link
            await box.append(_bulk(rng, t), t)
            await box.close_due_batches(t + 60_000, force=True)
            clock.advance_ms(1000)
            t += 1000
        reads.clear()
        for _ in range(30):  # a quiet half minute: one small write a second
            await box.append(Records(events=(_event("fcw", t),)), t)
            clock.advance_ms(1000)
            t += 1000
        assert 1 <= len(reads) <= 30 // STATVFS_EVERY_S + 1, reads
        fill(disk, leave_bytes=6 * MiB)  # something else takes the disk below the reserve
        assert (await box.stats(t)).counters.get(EVICTED_FOR_SPACE, 0) == 0
        clock.advance_ms(round(STATVFS_EVERY_S * 1000))
        await box.append(Records(events=(_event("fcw", t),)), t)
        evicted = (await box.stats(t)).counters.get(EVICTED_FOR_SPACE, 0)
        reads.clear()
        for _ in range(3):  # below the reserve: every write reads afresh
            await box.append(Records(events=(_event("fcw", t),)), t)
    finally:
        await box.close()
    assert evicted > 0, "the first write a reading period after the fill evicts for space"
    assert len(reads) == 3


async def test_the_reserve_guard_reads_again_after_enough_bytes_on_a_stopped_clock(
    small_disk: Callable[[int], Path],
) -> None:
    disk = small_disk(24 * MiB)
    rng = random.Random(12)
    box = await Outbox.open(
        disk / "outbox.sqlite3",
        fleet_id="f",
        vehicle_id="taxi-1",
        reserve_bytes=12 * MiB,
        monotonic=FakeMonotonic(),  # never moves: only the bytes written count
    )
    try:
        t = T0
        for _ in range(50):
            await box.append(_bulk(rng, t), t)
            await box.close_due_batches(t + 60_000, force=True)
            t += 1000
        fill(disk, leave_bytes=6 * MiB)
        written = 0
        while written <= STATVFS_EVERY_BYTES:  # 10 kB of bulk a write
            await box.append(_bulk(rng, t), t)
            written += 10_000
            t += 1000
        await box.append(_bulk(rng, t), t)
        stats = await box.stats(t)
    finally:
        await box.close()
    assert stats.counters.get(EVICTED_FOR_SPACE, 0) > 0
