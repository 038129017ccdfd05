"""Readers for the recording formats beyond candump: SavvyCAN/GVRET CSV and ASAM MDF4.

GVRET CSV is what SavvyCAN and GVRET-firmware loggers write, and the format of most public
community CAN logs. python-can has no reader for it; this one is as tolerant as the candump
reader: a malformed line is counted and skipped, the first one named.

MDF4 is read by python-can's ``MF4Reader``, which needs asammdf (the edge agent's ``mdf``
extra, kept off the gateway's plain install because it pulls numpy and pandas).
"""

from __future__ import annotations

import gc
import gzip
import importlib
import io
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Any

from edge_agent.errors import RecordingError
from edge_agent.sources import CanFrame, ReadStats, describe_os_error

GVRET_HEADER = "Time Stamp,ID,Extended,Dir,Bus,LEN,D1,D2,D3,D4,D5,D6,D7,D8"
MDF_EXTRA_HINT = "pip install 'taxi-edge-agent[mdf]'"
# Columns a GVRET file must name; older SavvyCAN versions write no Dir column.
_REQUIRED = ("time stamp", "id", "extended", "bus", "len", "d1")
_MAX_DATA = 64  # CAN FD
_MDF4_ID_BLOCK = 64  # the identification block every MDF file starts with


@dataclass(frozen=True, slots=True)
class _Columns:
    stamp: int
    ident: int
    extended: int
    bus: int
    length: int
    data: int

    @property
    def minimum(self) -> int:
        """Fields a line needs before its data bytes."""
        return max(self.stamp, self.ident, self.extended, self.bus, self.length) + 1


def _columns(header: str, path: Path) -> _Columns:
    names = [name.strip().lower() for name in header.strip().split(",")]
    missing = [name for name in _REQUIRED if name not in names]
    if missing:
        shown = header.strip()[:60].encode("ascii", "backslashreplace").decode()
        raise RecordingError(
            f"{path}:1: not a SavvyCAN/GVRET CSV header (expected '{GVRET_HEADER}', got '{shown}')"
        )
    return _Columns(*(names.index(name) for name in _REQUIRED))


_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def _parse_gvret_line(fields: list[str], cols: _Columns) -> CanFrame:
    """One frame from a split line; raises ValueError naming the bad field."""
    if len(fields) < cols.minimum:
        raise ValueError(f"{len(fields)} fields, expected at least {cols.minimum}")
    stamp_us = int(fields[cols.stamp])
    can_id = int(fields[cols.ident], 16)
    extended = _BOOLS.get(fields[cols.extended].strip().lower())
    if extended is None:
        raise ValueError(f"Extended is {fields[cols.extended].strip()!r}, not true or false")
    length = int(fields[cols.length])
    if not 0 <= length <= _MAX_DATA:
        raise ValueError(f"LEN {length} out of range 0..{_MAX_DATA}")
    cells = fields[cols.data : cols.data + length]
    if len(cells) < length:
        raise ValueError(f"LEN is {length} but only {len(cells)} data bytes follow")
    data = bytes(int(cell, 16) for cell in cells)  # bytes() rejects values over 0xFF
    if can_id > (0x1FFFFFFF if extended else 0x7FF):
        raise ValueError(f"identifier 0x{can_id:X} out of range")
    bus = int(fields[cols.bus])
    if bus < 0:
        raise ValueError("negative Bus")
    return CanFrame(stamp_us / 1e6, can_id, data, str(bus), extended)


def read_gvret_csv(path: Path, stats: ReadStats) -> Iterator[CanFrame]:
    """Read a SavvyCAN/GVRET CSV (optionally gzip-compressed); timestamps are microseconds.

    The Bus column (0, 1, ...) becomes the frame's channel, as python-can's readers give
    ASC and BLF channels.
    """
    opener: Callable[..., IO[str]] = gzip.open if path.suffix == ".gz" else open
    try:
        # utf-8-sig: spreadsheet programs put a byte order mark before the header.
        with opener(path, "rt", encoding="utf-8-sig", errors="replace") as lines:
            header = next(lines, "")
            if not header.strip():
                raise RecordingError(f"{path}: empty file (expected the header '{GVRET_HEADER}')")
            cols = _columns(header, path)
            for number, line in enumerate(lines, 2):
                if not line.strip():
                    continue
                try:
                    frame = _parse_gvret_line(line.split(","), cols)
                except ValueError as exc:
                    stats.bad_line(number, str(exc))
                    continue
                stats.frames += 1
                yield frame
    except (OSError, EOFError) as exc:  # gzip raises EOFError on a truncated stream
        raise RecordingError(f"{path}: {describe_os_error(exc)}") from None


def load_mdf4_support() -> ModuleType | None:
    """python-can's ``can.io.mf4`` with asammdf loaded, or None without the mdf extra.

    The first import of python-can ran with asammdf hidden (``edge_agent/__init__.py``);
    reloading the module imports it for real.
    """
    from can.io import mf4

    if getattr(mf4, "asammdf", None) is None:
        importlib.reload(mf4)
    return mf4 if getattr(mf4, "asammdf", None) is not None else None


def mf4_reader_class(path: Path) -> Any:
    """python-can's ``MF4Reader``, or a RecordingError naming the extra it needs."""
    mf4 = load_mdf4_support()
    if mf4 is None:
        raise RecordingError(
            f"{path}: reading MDF4 needs the edge agent's mdf extra ({MDF_EXTRA_HINT})"
        )
    return mf4.MF4Reader


def _open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _check_mdf4_identification(path: Path) -> None:
    """Name what is wrong with a file that is not MDF4 before asammdf tries to parse it."""
    try:
        with _open_binary(path) as file:
            ident = file.read(_MDF4_ID_BLOCK)
    except (OSError, EOFError) as exc:
        raise RecordingError(f"{path}: {describe_os_error(exc)}") from None
    if not ident:
        raise RecordingError(f"{path}: empty file (expected an MDF4 recording)")
    if not ident.startswith(b"MDF     "):
        raise RecordingError(
            f"{path}: not an MDF file (starts with {ident[:8]!r}, expected b'MDF     ')"
        )
    version = ident[8:16].decode("ascii", "replace").strip()
    if not version.startswith("4."):
        raise RecordingError(f"{path}: MDF version {version!r}, only MDF 4.x is read")
    if len(ident) < _MDF4_ID_BLOCK:
        raise RecordingError(f"{path}: file is truncated (no complete MDF identification block)")


def open_mf4(path: Path) -> Any:
    """An ``MF4Reader`` on ``path``, or a RecordingError naming what is wrong with the file."""
    reader_class = mf4_reader_class(path)
    _check_mdf4_identification(path)
    failure = ""
    # A failed open leaves asammdf's half-built file object behind, whose __del__ then
    # raises and prints a traceback; that noise is not the file's error, ours below is.
    hook = sys.unraisablehook
    sys.unraisablehook = lambda _: None
    try:
        try:
            # A path lets asammdf map the file; a compressed one is read whole.
            return reader_class(_open_binary(path) if path.suffix == ".gz" else str(path))
        except Exception as exc:  # noqa: BLE001 - asammdf raises many types on corrupt files
            failure = f"{type(exc).__name__}: {exc}"
        gc.collect()
    finally:
        sys.unraisablehook = hook
    raise RecordingError(f"{path}: corrupt or truncated MDF4 file: {failure}")
