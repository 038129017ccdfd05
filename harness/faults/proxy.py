"""A user-space link impairment proxy: TCP from 127.0.0.1:<port> to 127.0.0.1:<target>.

The kernel here has no netem, so the bad link is made in user space. Usage::

    with LinkProxy(broker.port) as link:
        ... agents connect to link.port ...
        link.set(latency_s=0.2, jitter_s=0.1, rate_bytes_per_s=2048)
        link.stall(True)            # nothing moves, sockets stay open
        link.partition(REFUSE)      # existing connections closed, new ones reset
        link.partition(BLACKHOLE)   # bytes vanish both ways, connections look open
        link.partition(None)        # healed
        link.drop()                 # close every connection, both sides, now
        link.set(drop_every_s=3.0)  # ... and again at random (exponential) intervals

Every setting takes effect at once, from any thread. The proxy runs its own asyncio loop
in one thread; every connection holds at most ``QUEUE_CHUNKS`` chunks of ``CHUNK``
bytes per direction in memory (a slow link pushes back on the sender through TCP, as a
real one does). The bandwidth cap is one token bucket per direction shared by all
connections (one link), paced in pieces of 1/20 s of the rate, so 2 kB/s is smooth.

A blackholed connection has lost bytes in the middle of its stream; when the partition
heals it is closed (TCP could not have resumed it either after such a gap).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from harness.mosquitto import free_port

CHUNK: Final = 16 * 1024
QUEUE_CHUNKS: Final = 64
POLL_S: Final = 0.02  # how quickly a held connection notices a setting changed
REFUSE: Final = "refuse"
BLACKHOLE: Final = "blackhole"


@dataclass(frozen=True)
class Impairment:
    latency_s: float = 0.0
    jitter_s: float = 0.0  # uniform extra delay in [0, jitter_s]; the byte order is kept
    rate_bytes_per_s: int = 0  # per direction; 0 = unlimited
    stalled: bool = False
    partition: str | None = None  # None, REFUSE or BLACKHOLE
    drop_every_s: float = 0.0  # mean interval of random connection drops; 0 = never


@dataclass
class LinkCounters:
    accepted: int = 0
    refused: int = 0
    dropped: int = 0  # connections closed by drop(), drop_every_s or a partition
    bytes_up: int = 0  # client -> target, delivered
    bytes_down: int = 0
    bytes_blackholed: int = 0


class _Bucket:
    """Token bucket for one direction; ``rate`` read from the settings at every take."""

    def __init__(self) -> None:
        self.tokens = 0.0
        self.stamp = time.monotonic()

    async def take(self, n: int, rate: int) -> None:
        if rate <= 0:
            return
        while True:
            now = time.monotonic()
            # At most 1/20 s of burst: the cap holds over any window.
            self.tokens = min(self.tokens + (now - self.stamp) * rate, rate / 20 + n)
            self.stamp = now
            if self.tokens >= n:
                self.tokens -= n
                return
            await asyncio.sleep(min((n - self.tokens) / rate, 0.25))


@dataclass(eq=False)
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    damaged: bool = False  # lost bytes to a blackhole
    closed: bool = False

    def close(self) -> None:
        self.closed = True
        for w in (self.client, self.upstream):
            if w is not None:
                _abort(w)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close now, with a reset: the peer sees the connection fail, as on a dropped link."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class LinkProxy:
    host: Final = "127.0.0.1"

    def __init__(self, target_port: int, *, port: int | None = None, seed: int = 1) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.settings = Impairment()
        self.counters = LinkCounters()
        self._rng = random.Random(seed)
        self._conns: set[_Conn] = set()
        self._buckets = (_Bucket(), _Bucket())
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._dropper: asyncio.Task[None] | None = None

    # -- control (any thread) ----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def set(self, **changes: object) -> None:
        """Change settings (the fields of :class:`Impairment`) at once."""
        old = self.settings
        new = dataclasses.replace(old, **changes)  # type: ignore[arg-type]
        self.settings = new
        if new.partition == REFUSE and old.partition != REFUSE:
            self.drop()
        if old.partition == BLACKHOLE and new.partition != BLACKHOLE:
            self._loop.call_soon_threadsafe(self._close_damaged)

    def stall(self, on: bool) -> None:
        self.set(stalled=on)

    def partition(self, mode: str | None) -> None:
        if mode not in (None, REFUSE, BLACKHOLE):
            raise ValueError(f"partition mode {mode!r}: use None, {REFUSE!r} or {BLACKHOLE!r}")
        self.set(partition=mode)

    def drop(self) -> None:
        """Close every current connection, both sides."""
        self._loop.call_soon_threadsafe(self._drop_all)

    @property
    def connections(self) -> int:
        return len(self._conns)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- the loop ----------------------------------------------------------------------

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self._dropper = asyncio.create_task(self._random_drops())

    async def _stop(self) -> None:
        if self._dropper is not None:
            self._dropper.cancel()
        if self._server is not None:
            self._server.close()
        self._drop_all()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    def _drop_all(self) -> None:
        for conn in list(self._conns):
            conn.close()
            self._conns.discard(conn)
            self.counters.dropped += 1

    def _close_damaged(self) -> None:
        for conn in list(self._conns):
            if conn.damaged:
                conn.close()
                self._conns.discard(conn)
                self.counters.dropped += 1

    async def _random_drops(self) -> None:
        while True:
            every = self.settings.drop_every_s
            if every <= 0:
                await asyncio.sleep(0.1)
                continue
            await asyncio.sleep(self._rng.expovariate(1.0 / every))
            if self.settings.drop_every_s > 0:
                self._drop_all()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        if self.settings.partition == REFUSE:
            self.counters.refused += 1
            _abort(writer)
            return
        self.counters.accepted += 1
        self._conns.add(conn)
        try:
            # A blackholed link delivers nothing, not even the connection upstream.
            while self.settings.partition == BLACKHOLE and conn in self._conns:
                conn.damaged = True
                with contextlib.suppress(TimeoutError):
                    data = await asyncio.wait_for(reader.read(CHUNK), POLL_S)
                    if not data:
                        return
                    self.counters.bytes_blackholed += len(data)
            if conn not in self._conns or conn.damaged:
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
            except OSError:
                return  # the target is down: the client sees its connection fail
            conn.upstream = up_writer
            if conn not in self._conns:
                return
            await asyncio.gather(
                self._pipe(conn, reader, up_writer, 0),
                self._pipe(conn, up_reader, writer, 1),
            )
        finally:
            self._conns.discard(conn)
            conn.close()

    async def _pipe(
        self,
        conn: _Conn,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        direction: int,
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUE_CHUNKS)
        writer = asyncio.create_task(self._deliver(conn, queue, dst, direction))
        last_due = 0.0
        try:
            while True:
                while self.settings.stalled and self.settings.partition is None:
                    if conn.closed:
                        return
                    await asyncio.sleep(POLL_S)  # hold: read nothing, the sender backs up
                data = await src.read(CHUNK)
                if not data:
                    break
                s = self.settings
                if s.partition == BLACKHOLE:
                    conn.damaged = True
                    self.counters.bytes_blackholed += len(data)
                    continue
                due = time.monotonic() + s.latency_s + self._rng.uniform(0, s.jitter_s)
                last_due = max(due, last_due)
                await queue.put((last_due, data))
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                queue.put_nowait(None)  # deliver what is queued, then stop
            except asyncio.QueueFull:
                writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            conn.close()
            self._conns.discard(conn)

    async def _deliver(
        self,
        conn: _Conn,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        dst: asyncio.StreamWriter,
        direction: int,
    ) -> None:
        bucket = self._buckets[direction]
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                due, data = item
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                view = memoryview(data)
                while view:
                    if conn.closed:
                        return
                    s = self.settings
                    if s.partition == BLACKHOLE:
                        conn.damaged = True
                        self.counters.bytes_blackholed += len(view)
                        break
                    if s.stalled:
                        await asyncio.sleep(POLL_S)
                        continue
                    size = (
                        len(view) if s.rate_bytes_per_s <= 0 else max(64, s.rate_bytes_per_s // 20)
                    )
                    piece, view = view[:size], view[size:]
                    await bucket.take(len(piece), s.rate_bytes_per_s)
                    if direction == 0:
                        self.counters.bytes_up += len(piece)
                    else:
                        self.counters.bytes_down += len(piece)
                    dst.write(piece)
                    await dst.drain()
        except (ConnectionError, OSError):
            conn.close()
