"""Replay checkpoints: where a replay stands, stored with every outbox append of it.

A checkpoint is msgpack of named fields with a version number: the recording, how many of
its frames are behind the stored records, whether it was read to the end, and the
pipeline's :meth:`~edge_agent.pipeline.Pipeline.snapshot` after those frames. A replay
killed at any moment restarts from exactly that point with exactly that state.

Agents before version 2 stored a pickle instead. Those are refused with a line saying
what to do: unpickling would run whatever the file says, and their classes are gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from edge_agent.errors import AgentError

CHECKPOINT_VERSION = 2
_PICKLE_PROTOCOLS = range(2, 6)  # a pickle starts with 0x80 and its protocol number


class CheckpointError(AgentError):
    """The outbox holds a replay checkpoint this agent cannot continue from."""


@dataclass(frozen=True)
class Checkpoint:
    recording: str
    frames_done: int  # frames of the recording whose records are in the outbox
    finished: bool
    pipeline: dict[str, Any]  # Pipeline.snapshot() after those frames

    def dump(self) -> bytes:
        blob: bytes = msgpack.packb(
            {
                "version": CHECKPOINT_VERSION,
                "recording": self.recording,
                "frames_done": self.frames_done,
                "finished": self.finished,
                "pipeline": self.pipeline,
            },
            use_bin_type=True,
        )
        return blob

    @classmethod
    def load(cls, blob: bytes) -> Checkpoint:
        fields = _unpack(blob)
        version = fields.get("version")
        if version != CHECKPOINT_VERSION:
            raise CheckpointError(
                f"replay checkpoint version {version!r} is not supported (this agent reads "
                f"version {CHECKPOINT_VERSION})"
            )
        try:
            return cls(
                str(fields["recording"]),
                int(fields["frames_done"]),
                bool(fields["finished"]),
                dict(fields["pipeline"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"the replay checkpoint lacks a field: {exc}") from None


def _unpack(blob: bytes) -> dict[str, Any]:
    try:
        fields = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        if blob[:1] == b"\x80" and len(blob) > 1 and blob[1] in _PICKLE_PROTOCOLS:
            raise CheckpointError(
                "the outbox holds a replay checkpoint of an older agent version; finish "
                "that replay with the version that started it, or replay into a new outbox "
                "path (`edge-agent run` still delivers what the old one holds)"
            ) from None
        raise CheckpointError(f"the outbox holds an unreadable replay checkpoint: {exc}") from None
    if not isinstance(fields, dict):
        raise CheckpointError("the outbox holds an unreadable replay checkpoint: not a map")
    return fields
