"""A candump recording converted to the other formats the agent reads: MDF4 (python-can's
own writer) and SavvyCAN/GVRET CSV (written here: python-can has no writer for it)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import can
from can.util import channel2int

from edge_agent.recordings import load_mdf4_support
from edge_agent.sources import FrameLike, ReplaySource

GVRET_HEADER = "Time Stamp,ID,Extended,Dir,Bus,LEN,D1,D2,D3,D4,D5,D6,D7,D8"


def bus_number(channel: object) -> int:
    """``can1`` -> 1, as python-can's MF4Writer numbers channels."""
    number = channel2int(str(channel))
    assert number is not None, channel
    return number


def gvret_line(frame: FrameLike) -> str:
    """One line as SavvyCAN writes it: microseconds, 8-digit hex id, trailing comma."""
    stamp_us = round(frame.timestamp * 1e6)
    extended = "true" if frame.is_extended_id else "false"
    data = "".join(f"{b:02X}," for b in frame.data)
    return (
        f"{stamp_us},{frame.arbitration_id:08X},{extended},Rx,{bus_number(frame.channel)},"
        f"{len(frame.data)},{data}\n"
    )


def write_gvret_csv(frames: Iterable[FrameLike], path: Path) -> Path:
    with path.open("w", encoding="ascii", newline="\n") as out:
        out.write(GVRET_HEADER + "\n")
        out.writelines(gvret_line(f) for f in frames if not f.is_error_frame)
    return path


def write_mf4(frames: Iterable[FrameLike], path: Path) -> Path:
    mf4 = load_mdf4_support()
    assert mf4 is not None, "the development install has the mdf extra"
    writer = mf4.MF4Writer(str(path))
    try:
        for f in frames:
            writer.on_message_received(
                can.Message(
                    timestamp=f.timestamp,
                    arbitration_id=f.arbitration_id,
                    is_extended_id=f.is_extended_id,
                    is_error_frame=f.is_error_frame,
                    is_remote_frame=f.is_remote_frame,
                    is_rx=True,
                    channel=bus_number(f.channel),
                    data=bytes(f.data),
                    check=False,
                )
            )
    finally:
        writer.stop()
    return path


def convert(candump: Path, path: Path) -> Path:
    """``candump`` rewritten as ``path`` (``.csv`` or ``.mf4``)."""
    frames = ReplaySource(candump).frames()
    return write_mf4(frames, path) if path.suffix == ".mf4" else write_gvret_csv(frames, path)
