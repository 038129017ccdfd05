"""Raw CAN frames as a candump ``-L`` log, the format ``edge-agent decode`` and python-can
read: ``(seconds.micros) interface id#data`` per line, ids in 3 hex digits (standard) or
8 (extended). The interface is the agent's bus name."""

from __future__ import annotations

from collections.abc import Iterable

from cloud_collector.store.base import EvidenceFrame


def candump_line(frame: EvidenceFrame) -> str:
    seconds, micros = divmod(frame.time_us, 1_000_000)
    can_id = f"{frame.can_id:08X}" if frame.extended else f"{frame.can_id:03X}"
    return f"({seconds}.{micros:06d}) {frame.bus} {can_id}#{frame.data.hex().upper()}\n"


def candump_log(frames: Iterable[EvidenceFrame]) -> str:
    return "".join(map(candump_line, frames))
