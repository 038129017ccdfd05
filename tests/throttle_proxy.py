"""A small TCP proxy on 127.0.0.1 that caps bandwidth, for uplink tests on a slow link.

Usage (inside a running event loop)::

    async with ThrottleProxy(upstream_port, rate_bytes_per_s=2048) as proxy:
        ... connect to proxy.port ...
        proxy.bytes_up, proxy.bytes_down

Each direction is one link of ``rate_bytes_per_s``, shared by all connections (a
reconnect does not get a second link while the old connection's bytes still drain). The
proxy reads only as fast as it forwards (at most one tick's worth of bytes at a time), so
what the sender wrote beyond that waits in the kernel's socket buffers, as it would in a
modem's: memory stays bounded and the sender sees the link's real pace in its PUBACKs.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

TICK_S = 0.05


class ThrottleProxy:
    def __init__(self, upstream_port: int, *, rate_bytes_per_s: int) -> None:
        if rate_bytes_per_s <= 0:
            raise ValueError("rate_bytes_per_s must be positive")
        self.upstream_port = upstream_port
        self.rate = rate_bytes_per_s
        self.port = 0
        self.bytes_up = 0  # client -> upstream, forwarded
        self.bytes_down = 0  # upstream -> client, forwarded
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Per direction (up, down): when the link is free again (event-loop time).
        self._free_at = {True: 0.0, False: 0.0}

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, limit=self._buffer_limit()
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    def _buffer_limit(self) -> int:
        # asyncio's stream reader reads ahead up to twice its limit: keep that to a tick.
        return max(256, round(self.rate * TICK_S))

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port, limit=self._buffer_limit()
            )
        except OSError:
            writer.close()
            return
        self._spawn(self._pipe(reader, up_writer, up=True))
        self._spawn(self._pipe(up_reader, writer, up=False))

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        per_tick = max(1, round(self.rate * TICK_S))
        try:
            while True:
                chunk = await reader.read(per_tick)
                if not chunk:
                    break
                # The chunk occupies the link after whatever is already on it; an idle
                # link banks no credit.
                start = max(loop.time(), self._free_at[up])
                self._free_at[up] = start + len(chunk) / self.rate
                await asyncio.sleep(self._free_at[up] - loop.time())
                writer.write(chunk)
                await writer.drain()
                if up:
                    self.bytes_up += len(chunk)
                else:
                    self.bytes_down += len(chunk)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
