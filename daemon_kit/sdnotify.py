"""A tiny ``sd_notify`` client and a watchdog gate that pings only while work moves.

systemd (``Type=notify``) passes ``NOTIFY_SOCKET``: an AF_UNIX datagram socket, either a
path or an abstract name written with a leading ``@``. Each datagram is newline-separated
``KEY=VALUE`` assignments. Without ``NOTIFY_SOCKET`` (a shell, a test, a container) every
call is a no-op, so the daemon can call it unconditionally.

API::

    notifier = Notifier.from_env()          # reads NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID
    notifier.ready("can0, can1, gpsd open; outbox 12 batches")   # READY=1 + STATUS=
    notifier.status("uplink connected; outbox 0 batches")       # STATUS=
    notifier.watchdog()                                         # WATCHDOG=1
    notifier.stopping("draining outbox")                        # STOPPING=1 + STATUS=
    notifier.watchdog_interval_s   # WATCHDOG_USEC / 2 in seconds, or None: no watchdog

    gate = WatchdogGate(stall_after_s=20.0, ping_every_s=notifier.watchdog_interval_s or 0)
    # on every watchdog turn, with the agent's injected clock:
    if gate.observe(clock.monotonic(), frames + commits + idle_ticks):
        notifier.watchdog()

The watchdog rule (``WatchdogGate``): a ping is due when the progress value has advanced
within the last ``stall_after_s`` seconds and ``ping_every_s`` has passed since the last
ping. ``progress`` is one number that only grows: the sum of the pipeline's counters
(frames decoded, outbox commits, batches acknowledged) plus a *loop heartbeat* that the
watchdog job increments on a turn where it found **no work waiting** (bus silent with the
ignition off, nothing to publish). So:

* a busy, healthy agent advances through its frame and commit counters;
* an idle, healthy agent advances through the heartbeat, because nothing is queued;
* a hung decoder or outbox leaves work queued: the loop still turns but must not tick the
  heartbeat, the counters stand still, pings stop after ``stall_after_s`` and systemd
  kills and restarts the agent when ``WatchdogSec=`` runs out;
* a hung main loop sends nothing at all, with the same result.

Choose ``stall_after_s`` below ``WatchdogSec=`` minus one ping interval, so a stall is
caught within one watchdog period.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Self


def _address(value: str) -> str | bytes | None:
    """The ``sendto`` address for a NOTIFY_SOCKET value: ``@name`` is abstract."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock and other kinds are not used on the gateways


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC in seconds (systemd's advice), or None without a watchdog.

    WATCHDOG_PID, when set, names the process the watchdog is meant for; a child that
    inherited the environment must not believe it is watched.
    """
    pid = environ.get("WATCHDOG_PID")
    if pid is not None and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2_000_000


def _one_line(text: str) -> str:
    # A newline would start a new assignment; systemd shows STATUS= on one line anyway.
    return " ".join(text.split())


class Notifier:
    """Sends sd_notify messages; every method is a no-op when there is no socket.

    Send errors are swallowed (and counted in ``errors``): a lost READY or WATCHDOG is
    handled by systemd's own timeouts, whereas an exception here would kill the agent.
    """

    def __init__(self, address: str | bytes | None, watchdog_interval_s: float | None) -> None:
        self._address = address
        self.watchdog_interval_s = watchdog_interval_s
        self.errors = 0
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        address = _address(raw) if raw else None
        return cls(address, _watchdog_interval(env) if address is not None else None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; True if it was sent."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError:
            self.errors += 1
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", "STATUS=" + _one_line(status))

    def status(self, text: str) -> bool:
        return self.send("STATUS=" + _one_line(text))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", "STATUS=" + _one_line(status))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class WatchdogGate:
    """Decides when to ping: only while ``progress`` keeps advancing (see module doc).

    Pure: time comes in as ``now`` (any monotonic clock, in seconds), nothing is sent.
    ``observe(now, progress)`` records the progress value and returns True when a ping is
    due, counting that ping as sent; ``due(now)`` asks the same question without changing
    anything. Before the first advance, the time of construction (the first ``observe``)
    counts as progress, so a freshly started agent gets one stall period to get going.
    """

    def __init__(self, stall_after_s: float, *, ping_every_s: float = 0.0) -> None:
        if stall_after_s <= 0:
            raise ValueError("stall_after_s must be positive")
        if ping_every_s < 0:
            raise ValueError("ping_every_s must not be negative")
        self.stall_after_s = stall_after_s
        self.ping_every_s = ping_every_s
        self._progress: int | None = None
        self._advanced_at: float | None = None
        self._pinged_at: float | None = None

    def observe(self, now: float, progress: int) -> bool:
        if self._progress is None or progress > self._progress:
            self._advanced_at = now
        # A counter that went down (a restarted component) is a new baseline, not progress.
        self._progress = progress
        if not self.due(now):
            return False
        self._pinged_at = now
        return True

    def due(self, now: float) -> bool:
        if self._advanced_at is None:
            return False  # nothing observed yet
        if now - self._advanced_at > self.stall_after_s:
            return False  # stalled: stay silent so systemd's watchdog fires
        return self._pinged_at is None or now - self._pinged_at >= self.ping_every_s
