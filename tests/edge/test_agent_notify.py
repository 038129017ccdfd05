"""`edge-agent run` as systemd sees it: READY, STATUS, WATCHDOG and STOPPING datagrams on a
real AF_UNIX socket, and no more watchdog pings once the pipeline stalls (an agent run
with a stalling frame source, tests/support/stall_agent.py)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.agent import ROOT, Setup, agent_cmd, setup
from harness.mosquitto import free_port

WATCHDOG_USEC = 1_000_000  # pings every 0.5 s; the gate calls a stall after ~0.67 s


@dataclass
class Listener:
    sock: socket.socket
    messages: list[tuple[float, str]] = field(default_factory=list)

    def pump(self, seconds: float) -> None:
        """Collect datagrams for ``seconds``."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.sock.settimeout(min(left, 0.2))
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def wait_for(self, line: str, timeout_s: float) -> float:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for at, got in self.messages:
                if got == line:
                    return at
            self.pump(0.2)
        raise AssertionError(f"no {line!r} within {timeout_s} s; got {self.messages[-10:]}")

    def times(self, line: str) -> list[float]:
        return [at for at, got in self.messages if got == line]


@pytest.fixture
def listener() -> Iterator[Listener]:
    # A short directory: AF_UNIX paths are limited to 107 bytes.
    short = tempfile.mkdtemp(prefix="ea-notify-")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(os.path.join(short, "notify"))
        yield Listener(sock)
    finally:
        sock.close()
        shutil.rmtree(short, ignore_errors=True)


def _start(
    s: Setup, listener: Listener, *, stall_after: int | None = None
) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if k != "WATCHDOG_PID"}
    environ.update(
        NOTIFY_SOCKET=str(listener.sock.getsockname()),
        WATCHDOG_USEC=str(WATCHDOG_USEC),
    )
    cmd = agent_cmd(s, "run")
    if stall_after is not None:
        cmd = [sys.executable, "-m", "tests.support.stall_agent", "--config", str(s.config)]
        cmd += ["--stall-after", str(stall_after)]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=environ, stderr=subprocess.PIPE, stdout=subprocess.PIPE
    )


def _terminate(proc: subprocess.Popen[bytes], listener: Listener) -> None:
    proc.send_signal(signal.SIGTERM)
    end = time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < end:
        listener.pump(0.2)
    listener.pump(0.2)
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
        raise AssertionError("the agent did not stop within 20 s of SIGTERM")
    _, err = proc.communicate(timeout=5)
    assert proc.returncode == 0, err.decode()[-3000:]


def test_ready_status_watchdog_and_stopping(tmp_path: Path, listener: Listener) -> None:
    s = setup(tmp_path, free_port())  # no broker: the uplink stays disconnected
    proc = _start(s, listener)
    try:
        ready = listener.wait_for("READY=1", 20)
        listener.pump(3.0)
        pings = [t for t in listener.times("WATCHDOG=1") if t >= ready]
        assert len(pings) >= 4, listener.messages
        statuses = [m for _, m in listener.messages if m.startswith("STATUS=")]
        streaming = [m for m in statuses if m.startswith("STATUS=streaming: 2 buses")]
        assert streaming, statuses
        assert "frames/s" in streaming[-1]
        assert "uplink disconnected" in streaming[-1]
        assert proc.poll() is None
        _terminate(proc, listener)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert listener.times("STOPPING=1")
    assert listener.times("STOPPING=1")[0] > ready


def test_stalled_pipeline_stops_the_pings(tmp_path: Path, listener: Listener) -> None:
    s = setup(tmp_path, free_port())
    proc = _start(s, listener, stall_after=3000)
    try:
        listener.wait_for("READY=1", 20)
        # Pings while frames flow, then a silence of 3 s (six ping periods) while alive.
        quiet_since = None
        end = time.monotonic() + 30
        while time.monotonic() < end:
            listener.pump(0.25)
            pings = listener.times("WATCHDOG=1")
            if pings and time.monotonic() - pings[-1] >= 3.0:
                quiet_since = pings[-1]
                break
        assert quiet_since is not None, "the pings never stopped"
        assert len(listener.times("WATCHDOG=1")) >= 2  # it did ping before the stall
        assert proc.poll() is None, "the agent should still be alive, only stalled"
        _terminate(proc, listener)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert listener.times("STOPPING=1")
