"""Building payloads by hand, including invalid ones, from their wire maps."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import msgpack

from protocol import compression, encode_batch
from protocol.wire import unpack_map
from tests.protocol import samples

Wire = dict[str, Any]


def split(payload: bytes) -> tuple[Wire, Wire]:
    """The envelope fields (without body) and the decompressed body map of a payload."""
    fields = unpack_map(
        payload, max_str_len=1 << 20, max_bin_len=1 << 20, max_array_len=1 << 20, max_map_len=64
    )
    frame = fields.pop("body")
    assert isinstance(frame, bytes)
    body = msgpack.unpackb(compression.decompress(frame, 1 << 24), raw=False)
    return fields, body


def join(header: Wire, body: object, *, frame: bytes | None = None) -> bytes:
    """A payload from header fields and a body object (or a ready-made body frame)."""
    if frame is None:
        frame = compression.compress(msgpack.packb(body, use_bin_type=True))
    return msgpack.packb({**header, "body": frame}, use_bin_type=True)


def full_wire() -> tuple[Wire, Wire]:
    return split(encode_batch(samples.full_batch()))


def mutated(change: Callable[[Wire, Wire], None]) -> bytes:
    """The full sample payload after ``change(header, body)`` edited its wire maps."""
    header, body = full_wire()
    header, body = copy.deepcopy(header), copy.deepcopy(body)
    change(header, body)
    return join(header, body)
