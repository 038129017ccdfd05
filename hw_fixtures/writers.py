"""Recording writers that give byte-identical files on every run.

- ``.log``: candump ``-L`` lines exactly as python-can's ``CanutilsLogWriter`` writes them
  (``(1772436600.012345) can0 700#... R``), formatted directly for speed;
- ``.asc.gz``: python-can's ``ASCWriter`` with the header dates pinned to the drive's start
  (it would write the wall-clock time and a local-time trigger block), gzip with mtime 0 and
  no file name;
- ``.blf``: python-can's ``BLFWriter`` with the zlib level pinned. Its header times come
  from the frames' own timestamps, so the file is deterministic given the same zlib.
"""

from __future__ import annotations

import gzip
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

import can

from hw_fixtures.buses import CHANNEL_NAMES, Frame

BLF_ZLIB_LEVEL: Final = 6
GZIP_LEVEL: Final = 9
_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


def log_line(frame: Frame) -> str:
    ts, channel, can_id, data = frame
    stamp = f"{ts // 1_000_000}.{ts % 1_000_000:06d}"
    return f"({stamp}) {CHANNEL_NAMES[channel]} {can_id:03X}#{data.hex().upper()} R\n"


def to_message(frame: Frame) -> can.Message:
    ts, channel, can_id, data = frame
    return can.Message(
        timestamp=ts / 1e6,
        arbitration_id=can_id,
        is_extended_id=False,
        is_rx=True,
        channel=CHANNEL_NAMES[channel],
        dlc=len(data),
        data=data,
        check=False,
    )


class LogWriter:
    """candump -L text, one line per frame."""

    def __init__(self, path: Path) -> None:
        self._file: TextIO = path.open("w", encoding="ascii", newline="\n")
        self._buf: list[str] = []

    def write(self, frame: Frame) -> None:
        self._buf.append(log_line(frame))
        if len(self._buf) >= 4096:
            self._file.write("".join(self._buf))
            self._buf.clear()

    def close(self) -> None:
        self._file.write("".join(self._buf))
        self._buf.clear()
        self._file.close()


def _asc_date(epoch_s: float) -> str:
    """The ASC header date (English names, milliseconds, truncated), in UTC."""
    dt = datetime.fromtimestamp(int(epoch_s * 1000) / 1000, tz=UTC)
    return (
        f"{_DAYS[dt.weekday()]} {_MONTHS[dt.month - 1]} {dt.day:02d} "
        f"{dt:%H:%M:%S}.{dt.microsecond // 1000:03d} {dt.year}"
    )


class _PinnedASCWriter(can.ASCWriter):
    """ASCWriter with UTC header dates that do not depend on the clock or the time zone.

    ``date`` shows the drive's start; ``Begin Triggerblock`` the first frame's time (to the
    millisecond), which is what the frame offsets are relative to.
    """

    def __init__(self, file: TextIO, *, start_epoch_s: float, **kwargs: Any) -> None:
        self._pinned_date = _asc_date(start_epoch_s)
        super().__init__(file, **kwargs)

    def _format_header_datetime(self, dt: datetime) -> str:
        if getattr(self, "header_written", True):  # called from __init__: the date line
            return self._pinned_date
        return _asc_date(self.started)  # the trigger block, just after the first frame


class AscGzWriter:
    """Vector ASC through python-can, gzip-compressed without a time stamp or name."""

    def __init__(self, path: Path, *, start_epoch_s: int) -> None:
        self._raw = path.open("wb")
        gz = gzip.GzipFile(
            filename="", mode="wb", fileobj=self._raw, compresslevel=GZIP_LEVEL, mtime=0
        )
        text = io.TextIOWrapper(gz, encoding="ascii", newline="\n")
        self._writer = _PinnedASCWriter(text, start_epoch_s=start_epoch_s)

    def write(self, frame: Frame) -> None:
        self._writer.on_message_received(to_message(frame))

    def close(self) -> None:
        self._writer.stop()
        self._raw.close()


class BlfWriter:
    """Vector BLF through python-can (channel numbers are stored 1-based: can0 -> 1)."""

    def __init__(self, path: Path) -> None:
        self._writer = can.BLFWriter(path, compression_level=BLF_ZLIB_LEVEL)

    def write(self, frame: Frame) -> None:
        self._writer.on_message_received(to_message(frame))

    def close(self) -> None:
        self._writer.stop()
