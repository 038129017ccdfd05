"""CAN sources: recordings (replay) and live python-can buses.

Every source yields objects with python-can's ``Message`` attribute names (see
:class:`FrameLike`), so the pipeline does not care where a frame came from.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import can

from edge_agent.errors import RecordingError, SourceError

log = logging.getLogger(__name__)

RECORDING_SUFFIXES = (".log", ".asc", ".blf", ".trc", ".mf4", ".csv")

# candump marks error frames with this flag in the id field.
_CAN_ERR_FLAG = 0x20000000


class FrameLike(Protocol):
    """The attributes of a frame the pipeline reads (a subset of ``can.Message``)."""

    @property
    def timestamp(self) -> float: ...
    @property
    def arbitration_id(self) -> int: ...
    @property
    def data(self) -> bytes | bytearray: ...
    @property
    def is_error_frame(self) -> bool: ...
    @property
    def is_extended_id(self) -> bool: ...
    @property
    def is_remote_frame(self) -> bool: ...
    @property
    def channel(self) -> Any: ...


@dataclass(slots=True)
class CanFrame:
    """A frame read from a candump log; lighter to build than ``can.Message``."""

    timestamp: float
    arbitration_id: int
    data: bytes
    channel: str
    is_extended_id: bool = False
    is_error_frame: bool = False
    is_remote_frame: bool = False


@dataclass
class ReadStats:
    """What a recording reader skipped. ``first_bad_line`` is 1-based."""

    frames: int = 0
    malformed_lines: int = 0
    first_bad_line: int | None = None
    first_bad_reason: str = ""

    def bad_line(self, number: int, reason: str) -> None:
        self.malformed_lines += 1
        if self.first_bad_line is None:
            self.first_bad_line, self.first_bad_reason = number, reason


_CANDUMP_LINE = "'(<seconds>) <channel> <id>#<data>'"


def _candump_field_error(stamp: str, ident: str, payload: str) -> str:
    """Which field of a candump line is not a number where one is expected."""
    try:
        float(stamp[1:-1])
    except ValueError:
        return f"timestamp {stamp!r} is not '(<seconds>)'"
    try:
        int(ident, 16)
    except ValueError:
        return f"identifier {ident!r} is not hexadecimal"
    return f"data {payload!r} is not hexadecimal bytes"


def _parse_candump_line(line: str) -> CanFrame:
    """Parse ``(1712345678.123456) can0 123#DEADBEEF`` (``-L`` format); raises ValueError
    naming the field that is wrong and what it should be."""
    fields = line.split()
    if len(fields) not in (3, 4):
        raise ValueError(f"{len(fields)} field(s), expected {_CANDUMP_LINE}")
    stamp, channel, frame = fields[:3]
    if not (stamp.startswith("(") and stamp.endswith(")")):
        raise ValueError(f"timestamp {stamp!r} is not '(<seconds>)'")
    ident, sep, payload = frame.partition("#")
    if not sep or not ident:
        raise ValueError(f"frame field {frame!r} has no '<id>#'")
    # One try around the conversions keeps the per-line cost of good lines as before;
    # a bad line is looked at again to say which field is wrong.
    try:
        time_s = float(stamp[1:-1])
        can_id = int(ident, 16)
        if can_id & _CAN_ERR_FLAG:
            return CanFrame(time_s, can_id & 0x1FFFFFFF, b"", channel, is_error_frame=True)
        if payload[:1] in ("R", "r"):
            return CanFrame(time_s, can_id, b"", channel, len(ident) > 3, is_remote_frame=True)
        if payload[:1] == "#":  # CAN FD: one flags nibble before the data
            payload = payload[2:]
        data = bytes.fromhex(payload)
    except ValueError:
        raise ValueError(_candump_field_error(stamp, ident, payload)) from None
    if len(data) > 64:
        raise ValueError("more than 64 data bytes")
    if can_id > 0x1FFFFFFF:
        raise ValueError("identifier out of range")
    return CanFrame(time_s, can_id, data, channel, len(ident) > 3)


def read_candump(path: Path, stats: ReadStats) -> Iterator[CanFrame]:
    """Read a candump ``-L`` log (optionally gzip-compressed), skipping malformed lines.

    python-can's own reader stops at the first bad line; a log cut by a power failure
    ends in one, and everything before it is still good data, so bad lines are counted
    in ``stats`` instead.
    """
    opener: Callable[..., IO[str]] = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="ascii", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    frame = _parse_candump_line(line)
                except ValueError as exc:
                    stats.bad_line(number, str(exc))
                    continue
                stats.frames += 1
                yield frame
    except (OSError, EOFError) as exc:  # gzip raises EOFError on a truncated stream
        raise RecordingError(f"{path}: {describe_os_error(exc)}") from None


def describe_os_error(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, EOFError):
        return "file is truncated (compressed stream ends early)"
    return f"cannot read: {getattr(exc, 'strerror', None) or exc}"


_BLF_SIGNATURE = b"LOGG"
_BLF_HEADER_BYTES = 72  # the part of the file header python-can's BLFReader reads first


def _check_blf_header(path: Path) -> None:
    """Name what is wrong with a file that is not BLF before python-can's reader meets it."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as file:
            head = file.read(_BLF_HEADER_BYTES)
    except (OSError, EOFError) as exc:
        raise RecordingError(f"{path}: {describe_os_error(exc)}") from None
    if not head:
        raise RecordingError(f"{path}: empty file (expected a BLF recording)")
    if not head.startswith(_BLF_SIGNATURE):
        raise RecordingError(
            f"{path}: not a BLF file (starts with {head[:4]!r}, expected {_BLF_SIGNATURE!r})"
        )
    if len(head) < _BLF_HEADER_BYTES:
        raise RecordingError(
            f"{path}: file is truncated (a BLF header is {_BLF_HEADER_BYTES} bytes, "
            f"file has {len(head)})"
        )


def _open_reader(path: Path) -> Any:
    if recording_format(path) == ".blf":
        _check_blf_header(path)
    # For .asc, python-can's LogReader makes timestamps relative to the first frame
    # (and takes no option for .asc.gz); replay keeps the recording's own clock.
    if recording_format(path) == ".asc":
        text = gzip.open(path, "rt") if path.suffix == ".gz" else open(path)  # noqa: SIM115
        return can.ASCReader(text, relative_timestamp=False)
    if recording_format(path) == ".mf4":
        from edge_agent.recordings import open_mf4  # it imports this module's frame types

        return open_mf4(path)
    return can.LogReader(str(path))


def _read_with_python_can(path: Path, stats: ReadStats) -> Iterator[Any]:
    try:
        reader = _open_reader(path)
    except FileNotFoundError:
        raise RecordingError(f"{path}: file not found") from None
    except RecordingError:
        raise
    except Exception as exc:  # noqa: BLE001 - each python-can reader has its own error types
        raise RecordingError(
            f"{path}: cannot open recording: {type(exc).__name__}: {exc}"
        ) from None
    # BLFReader ends quietly at a cut-off container; the header's file size tells.
    declared = getattr(reader, "file_size", 0) if isinstance(reader, can.BLFReader) else 0
    if declared and path.stat().st_size < declared:
        reader.stop()
        raise RecordingError(
            f"{path}: file is truncated (header says {declared} bytes, "
            f"file has {path.stat().st_size})"
        )
    try:
        for msg in reader:
            stats.frames += 1
            yield msg
    except Exception as exc:  # noqa: BLE001 - python-can's readers raise many types on corrupt files
        raise RecordingError(
            f"{path}: corrupt or truncated after frame {stats.frames}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        reader.stop()


def recording_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in RECORDING_SUFFIXES:
        raise RecordingError(
            f"{path}: unknown recording format (expected one of "
            f"{', '.join(RECORDING_SUFFIXES)}, optionally .gz)"
        )
    return suffixes[-1]


@dataclass
class ReplaySource:
    """Frames from a recording, optionally only one logged channel, with their own timestamps."""

    path: Path
    logged_channel: str | None = None
    stats: ReadStats = field(default_factory=ReadStats)
    # Every logged channel read, to name them when the one asked for is not there.
    channels: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._format = recording_format(self.path)
        if not self.path.exists():
            raise RecordingError(f"{self.path}: file not found")

    def frames(self) -> Iterator[FrameLike]:
        """All frames as fast as they can be read."""
        from edge_agent.recordings import read_gvret_csv  # it imports this module's types

        reader: Callable[[Path, ReadStats], Iterator[FrameLike]] = _read_with_python_can
        if self._format == ".log":
            reader = read_candump
        elif self._format == ".csv":
            reader = read_gvret_csv
        wanted = self.logged_channel
        channels = self.channels
        for frame in reader(self.path, self.stats):
            channel = str(frame.channel)
            channels.add(channel)
            if wanted is None or channel == wanted:
                yield frame

    def missing_channel(self) -> str | None:
        """After reading: why the channel asked for gave nothing, or None if it did."""
        wanted = self.logged_channel
        if wanted is None or wanted in self.channels or not self.channels:
            return None
        return (
            f"{self.path}: no channel {wanted!r} in the recording "
            f"(its channels: {', '.join(sorted(self.channels))})"
        )


def kernel_filters(can_ids: list[tuple[int, bool]]) -> list[dict[str, Any]]:
    """python-can filter list matching exactly these ids; socketcan applies it in the kernel."""
    return [
        {"can_id": can_id, "can_mask": 0x1FFFFFFF if ext else 0x7FF, "extended": ext}
        for can_id, ext in sorted(can_ids)
    ]


@dataclass
class BusStats:
    received: int = 0
    dropped_queue_full: int = 0


class BusSource:
    """A live python-can bus, read by one thread into a bounded queue.

    python-can's own ``AsyncBufferedReader`` queue is unbounded; here a full queue drops
    the newest frame and counts it, so a stalled consumer cannot exhaust memory.
    """

    def __init__(
        self,
        interface: str,
        channel: str,
        can_ids: list[tuple[int, bool]] | None = None,
        queue_size: int = 10_000,
        **bus_kwargs: Any,
    ) -> None:
        filters = kernel_filters(can_ids) if can_ids else None
        try:
            self._bus = can.Bus(
                interface=interface, channel=channel, can_filters=filters, **bus_kwargs
            )
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            raise SourceError(f"cannot open CAN interface {interface}:{channel}: {exc}") from None
        self.name = f"{interface}:{channel}"
        self.stats = BusStats()
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue_size)

    def close(self) -> None:
        self._bus.shutdown()

    @property
    def backlog(self) -> int:
        """Frames received and not yet handed on."""
        return self._queue.qsize()

    @property
    def dropped(self) -> int:
        return self.stats.dropped_queue_full

    @property
    def malformed_lines(self) -> int:
        return 0

    async def frames(self, stop: asyncio.Event) -> Any:
        """Yield frames until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        halt = threading.Event()

        def put(msg: Any) -> None:
            try:
                queue.put_nowait(msg)
            except asyncio.QueueFull:
                self.stats.dropped_queue_full += 1

        def read() -> None:
            while not halt.is_set():
                try:
                    msg = self._bus.recv(timeout=0.2)
                except can.CanError as exc:
                    log.warning("CAN receive failed on %s: %s", self.name, exc)
                    halt.wait(1.0)
                    continue
                if msg is not None:
                    self.stats.received += 1
                    loop.call_soon_threadsafe(put, msg)

        reader = threading.Thread(target=read, name=f"can-{self.name}", daemon=True)
        reader.start()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                getting = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getting, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if getting in done:
                    yield getting.result()
                else:
                    getting.cancel()
        finally:
            stopping.cancel()
            halt.set()
            await asyncio.to_thread(reader.join, 2.0)
