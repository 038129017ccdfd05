"""Recording readers and the live bus source."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import can
import pytest

from edge_agent.clock import SystemClock
from edge_agent.errors import RecordingError, SourceError
from edge_agent.feed import Pacer, paced
from edge_agent.sources import BusSource, ReplaySource, kernel_filters

LOG = """\
(1772436600.000000) can0 700#1020010101000001
(1772436600.000400) can0 738#010A00020301
(1772436600.001000) can1 386#2003200320032003
(1772436600.002000) can1 20000080#0000000000000000
(1772436600.003000) can1 12345678#0102
(1772436600.004000) can0 123#R
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_candump_frames_keep_timestamps_ids_and_short_dlc(tmp_path: Path) -> None:
    src = ReplaySource(write(tmp_path, "d.log", LOG))
    frames = list(src.frames())
    assert len(frames) == 6
    first = frames[0]
    assert (first.timestamp, first.channel, first.arbitration_id) == (1772436600.0, "can0", 0x700)
    assert bytes(first.data) == bytes.fromhex("1020010101000001")
    assert len(frames[1].data) == 6
    assert frames[3].is_error_frame
    assert frames[4].is_extended_id
    assert frames[4].arbitration_id == 0x12345678
    assert frames[5].is_remote_frame
    assert src.stats.malformed_lines == 0


def test_channel_filter(tmp_path: Path) -> None:
    src = ReplaySource(write(tmp_path, "d.log", LOG), logged_channel="can1")
    assert {str(f.channel) for f in src.frames()} == {"can1"}


def test_malformed_lines_are_skipped_counted_and_located(tmp_path: Path) -> None:
    bad = LOG.splitlines()
    bad.insert(2, "(1772436600.000500) can0 700#10200")  # odd number of hex digits
    bad.insert(4, "garbage")
    bad.append("(1772436600.005000) can0 7")  # cut by a power failure
    src = ReplaySource(write(tmp_path, "d.log", "\n".join(bad)))
    assert len(list(src.frames())) == 6
    assert src.stats.malformed_lines == 3
    assert src.stats.first_bad_line == 3


def test_gzip_and_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "d.log.gz"
    path.write_bytes(gzip.compress(LOG.encode() * 50))
    assert len(list(ReplaySource(path).frames())) == 300
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(RecordingError, match=r"cut\.log\.gz: file is truncated"):
        list(ReplaySource(cut).frames())


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"d\.txt: unknown recording format"):
        ReplaySource(write(tmp_path, "d.txt", LOG))
    with pytest.raises(RecordingError, match=r"nope\.blf: file not found"):
        ReplaySource(tmp_path / "nope.blf")


def _write_blf(path: Path, n: int) -> None:
    with can.BLFWriter(str(path)) as writer:
        for i in range(n):
            writer.on_message_received(
                can.Message(
                    timestamp=1772436600 + i / 100,
                    arbitration_id=0x700,
                    is_extended_id=False,
                    data=bytes([i % 256] * 8),
                    channel=0,
                )
            )


def test_blf_reads_and_truncated_blf_fails_with_file_name(tmp_path: Path) -> None:
    path = tmp_path / "d.blf"
    _write_blf(path, 5000)
    assert len(list(ReplaySource(path).frames())) == 5000
    cut = tmp_path / "cut.blf"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    src = ReplaySource(cut)
    with pytest.raises(
        RecordingError, match=r"cut\.blf: file is truncated \(header says \d+ bytes"
    ):
        list(src.frames())


def test_garbage_blf_is_a_recording_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.blf"
    path.write_bytes(b"\x00\xff" * 1000)
    with pytest.raises(RecordingError, match=r"junk\.blf"):
        list(ReplaySource(path).frames())


async def test_paced_replay_follows_recorded_time(tmp_path: Path) -> None:
    lines = [f"({1772436600 + i * 0.05:.6f}) can0 700#00" for i in range(5)]
    src = ReplaySource(write(tmp_path, "d.log", "\n".join(lines)))
    loop = asyncio.get_running_loop()
    start = loop.time()
    stamps = [f.timestamp async for f in paced(src.frames(), Pacer(SystemClock(), 2.0))]
    elapsed = loop.time() - start
    assert stamps == [1772436600 + i * 0.05 for i in range(5)]
    assert elapsed >= 0.09  # 0.2 s of recording at double speed


def test_kernel_filters_match_exact_ids() -> None:
    assert kernel_filters([(0x700, False), (0x18FEF100, True)]) == [
        {"can_id": 0x700, "can_mask": 0x7FF, "extended": False},
        {"can_id": 0x18FEF100, "can_mask": 0x1FFFFFFF, "extended": True},
    ]


async def test_bus_source_reads_a_python_can_bus_with_filters() -> None:
    sender = can.Bus(interface="virtual", channel="unit-test")
    source = BusSource("virtual", "unit-test", can_ids=[(0x700, False)], queue_size=100)
    stop = asyncio.Event()
    got: list[int] = []

    async def consume() -> None:
        async for msg in source.frames(stop):
            got.append(msg.arbitration_id)
            if len(got) == 3:
                stop.set()

    try:
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.1)
        for can_id in (0x700, 0x123, 0x700, 0x700):
            sender.send(can.Message(arbitration_id=can_id, is_extended_id=False, data=b"\x01"))
        await asyncio.wait_for(task, timeout=5)
    finally:
        source.close()
        sender.shutdown()
    assert got == [0x700, 0x700, 0x700]


def test_unknown_interface_is_a_source_error() -> None:
    with pytest.raises(SourceError, match="cannot open CAN interface nosuchbus:can0"):
        BusSource("nosuchbus", "can0")


async def test_bus_source_counts_the_frames_its_full_queue_drops() -> None:
    sender = can.Bus(interface="virtual", channel="unit-drops")
    source = BusSource("virtual", "unit-drops", queue_size=2)
    stop = asyncio.Event()
    frames = source.frames(stop)
    try:
        first = asyncio.ensure_future(anext(frames))  # starts the reader thread
        await asyncio.sleep(0.1)
        sender.send(can.Message(arbitration_id=0x700, is_extended_id=False, data=b"\x01"))
        await asyncio.wait_for(first, timeout=5)
        # The consumer now stands still: 2 frames fit in the queue, the other 8 are dropped.
        for _ in range(10):
            sender.send(can.Message(arbitration_id=0x700, is_extended_id=False, data=b"\x02"))
        for _ in range(50):
            if source.stats.received == 11:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        assert (source.backlog, source.dropped) == (2, 8)
    finally:
        stop.set()
        await frames.aclose()
        source.close()
        sender.shutdown()
