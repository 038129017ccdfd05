"""The control channel between the collector and its API processes (``[http] processes``).

One socket pair per API process, length-prefixed pickled frames both ways (the pair is
private to the two processes: no one else can write to it):

* collector -> API process: first its ``CollectorConfig`` (secrets included, never on a
  command line), then every ``STATE_EVERY_S`` a ``State``: ingest's counters (for
  /metrics, and whether MQTT is connected, for /readyz) and the HTTP figures of all API
  processes together;
* API process -> collector: ``Started`` once it serves, then every ``STATE_EVERY_S`` its
  own ``HttpFigures`` (requests in progress, 429s by limit).

End of file on either side means the other side is gone: an API process whose collector
died stops.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from cloud_collector.metrics import IngestMetrics

STATE_EVERY_S: Final = 0.25
_HEADER: Final = struct.Struct("!I")
# A frame is a config, counters or figures: a few KiB; anything larger is a broken peer.
MAX_FRAME: Final = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Started:
    pid: int


@dataclass(slots=True)
class HttpFigures:
    """Requests in progress and 429s by limit, of one API process or of all of them."""

    in_progress: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    def as_tuple(self) -> tuple[int, Counter[str]]:
        return self.in_progress, self.refused


@dataclass(frozen=True, slots=True)
class State:
    ingest: IngestMetrics
    http: HttpFigures


def frame(message: object) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def _length(header: bytes) -> int:
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ValueError(f"control channel: frame of {length} bytes (at most {MAX_FRAME})")
    return int(length)


async def read_frame(reader: asyncio.StreamReader) -> object | None:
    """The next message, or None at end of file (the peer is gone)."""
    try:
        header = await reader.readexactly(_HEADER.size)
        body = await reader.readexactly(_length(header))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    # Trusted: a private socket pair between the collector and its own child.
    message: object = pickle.loads(body)
    return message


def read_frame_blocking(sock: socket.socket) -> object | None:
    """The next message read synchronously (before the event loop runs), None at EOF."""

    def exactly(n: int) -> bytes | None:
        chunks = bytearray()
        while len(chunks) < n:
            got = sock.recv(n - len(chunks))
            if not got:
                return None
            chunks += got
        return bytes(chunks)

    header = exactly(_HEADER.size)
    body = None if header is None else exactly(_length(header))
    return None if body is None else pickle.loads(body)  # trusted, as in read_frame
