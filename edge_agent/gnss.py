"""An asyncio client for gpsd's JSON protocol that outlives gpsd restarts.

``GpsdClient.run`` connects, asks gpsd to stream reports, hands each position fix to a
callback, and on any connection trouble reconnects with capped, fully jittered
exponential backoff until told to stop. Socket errors never escape ``run``: they are
counted and logged, at most once per ``log_interval_s`` per kind, so a gpsd that is down
for an hour writes a few lines, not thousands. Parsing lives in ``edge_agent.gpsd_protocol``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable

from daemon_kit.backoff import Backoff
from edge_agent.gpsd_protocol import (
    WATCH_COMMAND,
    GpsdStream,
    OtherReport,
    Rejected,
    parse_endpoint,
)
from protocol.records import GnssFix

__all__ = ["GPSD_DEFAULT_PORT", "GpsdClient", "parse_endpoint"]

log = logging.getLogger(__name__)

GPSD_DEFAULT_PORT = 2947
# gpsd's longest reports (SKY with many satellites) are a few KiB; a line without a
# newline after 64 KiB means the stream is not gpsd's or is corrupt.
DEFAULT_MAX_LINE_BYTES = 64 * 1024


class _LogThrottle:
    """Lets one message per key through per interval and counts the ones it held back."""

    def __init__(self, interval_s: float, monotonic: Callable[[], float]) -> None:
        self._interval_s = interval_s
        self._monotonic = monotonic
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def admit(self, key: str) -> int | None:
        """None to stay quiet; else how many messages of this key were held back since."""
        now = self._monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._held[key] += 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


class _SessionEndError(Exception):
    """Ends one connection for a reason already counted and logged; the loop reconnects."""


class GpsdClient:
    """Streams fixes from gpsd at ``host:port`` and keeps the latest one and counters.

    ``wall_clock`` (Unix seconds) stamps each line's arrival for ``clock_offset_ms``;
    ``random01`` draws the backoff jitter; ``monotonic`` paces the log. All three are
    injectable so tests are deterministic. ``epoch_wait_s`` is how long a fix waits for
    another gpsd report of the same epoch before it is delivered; it must exceed the time
    the receiver takes to send one epoch's sentences (at 9600 baud a GGA, GSA, GSV...
    RMC burst takes ~0.4 s). A report of the next epoch ends the wait sooner.
    """

    def __init__(  # noqa: PLR0913 - the client's knobs and injected clocks, keyword-only
        self,
        host: str,
        port: int = GPSD_DEFAULT_PORT,
        *,
        wall_clock: Callable[[], float] = time.time,
        random01: Callable[[], float] = random.random,
        monotonic: Callable[[], float] = time.monotonic,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        log_interval_s: float = 60.0,
        epoch_wait_s: float = 0.5,
    ) -> None:
        self.host = host
        self.port = port
        self._wall_clock = wall_clock
        self._random01 = random01
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._connect_timeout_s = connect_timeout_s
        self._max_line_bytes = max_line_bytes
        self._epoch_wait_s = epoch_wait_s
        self._throttle = _LogThrottle(log_interval_s, monotonic)
        self._stream = GpsdStream()
        self.connected = False
        # Fixes delivered to on_fix: one per GNSS epoch.
        self.fixes = 0
        # Successful connections; every one after the first is a reconnect.
        self.connects = 0
        self.connect_failures = 0
        # Connections that ended without being asked to (EOF, reset, protocol error).
        self.disconnects = 0
        # Peers whose first line was not gpsd's VERSION banner.
        self.protocol_errors = 0

    @property
    def endpoint(self) -> str:
        """``host:port`` as a config file writes it, IPv6 in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def latest(self) -> GnssFix | None:
        """The last position fix received, however old; check its ``time_ms``."""
        return self._stream.latest

    @property
    def fix_mode(self) -> int:
        """gpsd's current mode: 0 unknown (also while disconnected), 1 no fix, 2 2D, 3 3D."""
        return self._stream.fix_mode

    @property
    def malformed(self) -> Counter[str]:
        """Skipped lines by reason, e.g. ``bad_json``, ``lat_out_of_range``."""
        return self._stream.malformed

    @property
    def reconnects(self) -> int:
        return max(self.connects - 1, 0)

    def stats(self) -> dict[str, int]:
        """Flat counters and gauges for a health record, under ``gnss_`` names."""
        values = {
            "gnss_connected": int(self.connected),
            "gnss_fix_mode": self.fix_mode,
            "gnss_fixes": self.fixes,
            "gnss_reconnects": self.reconnects,
            "gnss_connect_failures": self.connect_failures,
            "gnss_disconnects": self.disconnects,
            "gnss_protocol_errors": self.protocol_errors,
            "gnss_merged_reports": self._stream.merged_reports,
            "gnss_late_reports": self._stream.late_reports,
            "gnss_untimed_reports": self._stream.untimed_reports,
        }
        for reason, count in sorted(self.malformed.items()):
            values[f"gnss_malformed_{reason}"] = count
        return values

    async def run(self, on_fix: Callable[[GnssFix], None], stop: asyncio.Event) -> None:
        """Deliver fixes to ``on_fix`` until ``stop`` is set; reconnects on its own.

        Each GNSS epoch arrives once, complete, at most ``epoch_wait_s`` after gpsd's
        last report of it (see ``GpsdStream``). Returns soon after ``stop`` is set.
        Connection problems never end it; an exception raised by ``on_fix`` does, since
        that is a bug in the caller.
        """
        loop_task = asyncio.create_task(self._reconnect_forever(on_fix))
        stop_task = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({loop_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (loop_task, stop_task):
                task.cancel()
            await asyncio.gather(loop_task, stop_task, return_exceptions=True)
            self.connected = False
            self._stream.lost()
        if not loop_task.cancelled():
            loop_task.result()  # re-raises the callback's exception
        self._deliver(on_fix, self._stream.flush())  # the epoch that was still open

    async def _reconnect_forever(self, on_fix: Callable[[GnssFix], None]) -> None:
        backoff = Backoff(self._backoff_base_s, self._backoff_cap_s, self._random01)
        while True:
            if await self._session(on_fix):
                # A connection that got as far as gpsd's banner restarts the schedule.
                backoff.reset()
            await asyncio.sleep(backoff.next_delay_s())

    async def _session(self, on_fix: Callable[[GnssFix], None]) -> bool:
        """One connection, from connect to its end; True if gpsd answered as gpsd."""
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, limit=self._max_line_bytes
                )
        except OSError as exc:  # refused, unreachable, DNS, and TimeoutError
            self.connect_failures += 1
            self._log(logging.WARNING, "unreachable", "gpsd at %s unreachable: %s", exc)
            return False
        self.connected = True
        self.connects += 1
        self._log(logging.INFO, "connected", "connected to gpsd at %s")
        greeted = False
        try:
            writer.write(WATCH_COMMAND)
            await writer.drain()
            while True:
                line = await self._next_line(reader)
                if line is None:  # quiet spell: the pending epoch is complete
                    self._deliver(on_fix, self._stream.flush())
                    continue
                self._handle_line(line, greeted)
                greeted = True
                self._deliver(on_fix, self._stream.take_complete())
        except asyncio.IncompleteReadError:
            self._lost("gpsd at %s closed the connection")
        except OSError as exc:
            self._lost("connection to gpsd at %s lost: %s", exc)
        except _SessionEndError:
            self._lost(None)  # already logged where it was raised
        finally:
            self.connected = False
            self._stream.lost()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        # Outside the finally, so an exception from on_fix is not followed by another call.
        self._deliver(on_fix, self._stream.flush())
        return greeted

    def _lost(self, message: str | None, *args: object) -> None:
        self.disconnects += 1
        if message is not None:
            self._log(logging.WARNING, "lost", message, *args)

    def _deliver(self, on_fix: Callable[[GnssFix], None], fixes: list[GnssFix]) -> None:
        for fix in fixes:
            self.fixes += 1
            on_fix(fix)

    async def _next_line(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next line, or None if a fix is pending and nothing came for a while."""
        if not self._stream.pending:
            return await self._read_line(reader)
        timeout = asyncio.timeout(self._epoch_wait_s)
        try:
            async with timeout:
                return await self._read_line(reader)
        except TimeoutError:
            if not timeout.expired():
                raise  # a socket's own ETIMEDOUT, not our quiet spell
            return None

    async def _read_line(self, reader: asyncio.StreamReader) -> bytes:
        try:
            # Raises IncompleteReadError at EOF, e.g. when gpsd exits. Cancelling it (the
            # quiet-spell timeout) leaves a partly received line in the reader's buffer.
            return await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            # The rest of an over-long line cannot be skipped without reading it all;
            # starting a fresh connection is simpler and bounds memory.
            self._stream.count_malformed("line_too_long")
            self._log(
                logging.WARNING,
                "line_too_long",
                "gpsd at %s sent a line over %s bytes; reconnecting",
                self._max_line_bytes,
            )
            raise _SessionEndError from None

    def _handle_line(self, line: bytes, greeted: bool) -> None:
        """Feed one line; the first one of a connection must be gpsd's banner."""
        received_ms = round(self._wall_clock() * 1000)
        parsed = self._stream.feed(line, received_ms)
        if not greeted:
            # gpsd always greets with VERSION; anything else is the wrong port (for example
            # a receiver's raw NMEA feed), and reading it forever would only count garbage.
            if not (isinstance(parsed, OtherReport) and parsed.cls == "VERSION"):
                self.protocol_errors += 1
                self._log(
                    logging.ERROR,
                    "protocol",
                    "%s does not answer like gpsd; first line: %r",
                    line[:80],
                )
                raise _SessionEndError
        elif isinstance(parsed, Rejected):
            self._log(
                logging.WARNING, parsed.reason, "skipped a gpsd line from %s: %s", parsed.reason
            )

    def _log(self, level: int, key: str, message: str, *args: object) -> None:
        """Log ``message % (endpoint, *args)`` unless this key was logged recently."""
        held = self._throttle.admit(key)
        if held is None or not log.isEnabledFor(level):
            return
        suffix = f" ({held} similar messages held back)" if held else ""
        log.log(level, message + suffix, self.endpoint, *args)
