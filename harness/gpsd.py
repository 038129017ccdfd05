"""A real gpsd for tests, fed with NMEA over TCP on 127.0.0.1.

Usage::

    with GpsdHarness([nmea_sentence("GPRMC,..."), ...], interval_s=0.1) as gpsd:
        client = GpsdClient(gpsd.host, gpsd.port)
        ...
        gpsd.stop()   # gpsd dies (SIGKILL by default); the NMEA feed keeps going
        gpsd.start()  # same port again; returns once gpsd listens and reads the feed

The harness runs a small NMEA server (the "receiver") and starts
``gpsd -N -n -S <port> -F <control socket> tcp://127.0.0.1:<nmea port>`` against it.
``-n`` makes gpsd open the feed at once instead of waiting for a client; ``-N`` keeps it
in the foreground as our child. The feed writes one burst (an item of ``nmea``) per
``interval_s`` to every connected gpsd, and only advances while one is connected, so a
restarted gpsd carries on where the previous one stopped and nothing is sent to no one.

``start``/``stop`` block for at most ``startup_timeout_s``; from async tests call them
through ``asyncio.to_thread`` so the event loop (and the client under test) keeps running.
gpsd's stderr goes to a log file; ``log_text()`` reads it, and leaving the ``with`` block
through an exception prints its tail to stderr, where pytest shows it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from harness.mosquitto import free_port

LOCALHOST = "127.0.0.1"


def gpsd_path() -> str:
    """gpsd's executable; /usr/sbin is often not on a non-root PATH."""
    return os.environ.get("GPSD") or shutil.which("gpsd") or "/usr/sbin/gpsd"


def nmea_sentence(body: str) -> str:
    """``"GPGGA,..."`` to ``"$GPGGA,...*hh\\r\\n"`` with its XOR checksum."""
    checksum = functools.reduce(lambda acc, char: acc ^ ord(char), body, 0)
    return f"${body}*{checksum:02X}\r\n"


def _as_bytes(burst: str | bytes) -> bytes:
    """Text bursts get CRLF line ends as NMEA wants; bytes go out exactly as given."""
    if isinstance(burst, bytes):
        return burst
    return "".join(line.rstrip("\r") + "\r\n" for line in burst.splitlines()).encode("ascii")


class NmeaFeed:
    """A TCP server on 127.0.0.1 that plays NMEA bursts to every connected reader."""

    def __init__(self, nmea: Sequence[str | bytes], interval_s: float, repeat: bool) -> None:
        self._bursts = [_as_bytes(burst) for burst in nmea]
        self._interval_s = interval_s
        self._repeat = repeat
        self._server = socket.create_server((LOCALHOST, 0))
        self._server.settimeout(0.05)  # lets the accept loop notice close()
        self.port: int = self._server.getsockname()[1]
        self._readers: list[socket.socket] = []
        self._cond = threading.Condition()
        self._closed = False
        # Connections accepted so far; start() waits for gpsd's to show up here.
        self.accepted = 0
        self.sent = 0
        self._threads = [
            threading.Thread(target=self._accept_loop, name="nmea-accept", daemon=True),
            threading.Thread(target=self._play_loop, name="nmea-play", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the server socket was closed
            # A reader that stops reading (e.g. a SIGSTOPped gpsd) must not stall the feed.
            conn.settimeout(1.0)
            with self._cond:
                self._readers.append(conn)
                self.accepted += 1
                self._cond.notify_all()

    def _play_loop(self) -> None:
        index = 0
        while index < len(self._bursts):
            with self._cond:
                self._cond.wait_for(lambda: self._readers or self._closed)
                if self._closed:
                    return
                self._send(self._bursts[index])
            index += 1
            if self._repeat and index == len(self._bursts):
                index = 0
            time.sleep(self._interval_s)

    def _send(self, data: bytes) -> None:
        """Write to every reader, dropping those that went away (caller holds the lock)."""
        for conn in list(self._readers):
            try:
                conn.sendall(data)
            except OSError:
                self._readers.remove(conn)
                conn.close()
        self.sent += 1

    def wait_accepted(self, count: int, timeout_s: float) -> bool:
        """Wait until ``count`` connections in total were accepted."""
        with self._cond:
            return self._cond.wait_for(lambda: self.accepted >= count, timeout_s)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for conn in self._readers:
                conn.close()
            self._readers.clear()
            self._cond.notify_all()
        self._server.close()
        for thread in self._threads:
            thread.join(timeout=2.0)


class GpsdHarness:
    """A gpsd child process on 127.0.0.1:``port`` reading NMEA from an ``NmeaFeed``.

    ``nmea`` items are bursts (one or more sentences, or raw bytes for garbage);
    ``start_gpsd=False`` reserves the port and starts only the feed, for tests of a
    client that comes up before gpsd does.
    """

    host = LOCALHOST

    def __init__(
        self,
        nmea: Sequence[str | bytes],
        *,
        interval_s: float = 0.1,
        repeat: bool = False,
        start_gpsd: bool = True,
        debug_level: int = 1,
        startup_timeout_s: float = 5.0,
    ) -> None:
        self._nmea = nmea
        self._interval_s = interval_s
        self._repeat = repeat
        self._start_gpsd = start_gpsd
        self._debug_level = debug_level
        self._startup_timeout_s = startup_timeout_s
        self.port = free_port()
        self._feed: NmeaFeed | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        # A short private directory: a Unix socket path must stay under 108 bytes.
        self._dir = Path(tempfile.mkdtemp(prefix="gpsd-"))
        self.log_path = self._dir / "gpsd.log"

    @property
    def nmea_port(self) -> int:
        return self._require_feed().port

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Self:
        try:
            self._feed = NmeaFeed(self._nmea, self._interval_s, self._repeat)
            if self._start_gpsd:
                self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is not None:
                print(f"--- gpsd log (tail)\n{self.log_text()[-4000:]}", file=sys.stderr)
        finally:
            self.close()

    def start(self) -> None:
        """Start gpsd and return once it accepts clients and has opened the NMEA feed."""
        if self.running:
            raise RuntimeError("gpsd is already running")
        feed = self._require_feed()
        accepted_before = feed.accepted
        command = [
            gpsd_path(),
            "-N",
            "-n",
            "-D",
            str(self._debug_level),
            "-S",
            str(self.port),
            "-F",
            str(self._dir / "control.sock"),
            f"tcp://{LOCALHOST}:{feed.port}",
        ]
        # Same session and process group as the tests, so a Ctrl-C reaches gpsd too. (As a
        # session leader gpsd 3.22 logs to syslog instead of stderr, losing the log file.)
        with self.log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self._startup_timeout_s
        listening = self._wait_listening(deadline)
        remaining_s = max(deadline - time.monotonic(), 0.0)
        if not (listening and feed.wait_accepted(accepted_before + 1, remaining_s)):
            self.stop()
            raise RuntimeError(
                f"gpsd did not come up within {self._startup_timeout_s} s:\n{self.log_text()}"
            )

    def _wait_listening(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if not self.running:
                return False
            with contextlib.suppress(OSError):
                socket.create_connection((LOCALHOST, self.port), timeout=0.2).close()
                return True
            time.sleep(0.02)
        return False

    def stop(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """End gpsd with ``sig`` (SIGKILL: a crash; SIGTERM: a clean exit) and reap it."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=self._startup_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=self._startup_timeout_s)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        """Stop gpsd and the feed and remove the temporary files; safe to call twice."""
        self.stop()
        if self._feed is not None:
            self._feed.close()
            self._feed = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def _require_feed(self) -> NmeaFeed:
        if self._feed is None:
            raise RuntimeError("use GpsdHarness as a context manager: the feed is not running")
        return self._feed
