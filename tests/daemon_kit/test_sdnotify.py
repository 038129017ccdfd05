"""sd_notify client and watchdog gate: pure rules, then the protocol seen by a real socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from daemon_kit.sdnotify import Notifier, WatchdogGate

REPO = Path(__file__).resolve().parents[2]

# --- WatchdogGate: pure --------------------------------------------------------------------


def test_gate_pings_while_progress_advances() -> None:
    gate = WatchdogGate(stall_after_s=5.0)
    assert not gate.due(0.0)  # nothing observed yet
    assert [gate.observe(float(t), t) for t in range(10)] == [True] * 10


def test_gate_stops_after_stall_and_resumes_on_progress() -> None:
    gate = WatchdogGate(stall_after_s=5.0)
    assert gate.observe(0.0, 100)
    assert gate.observe(5.0, 100)  # exactly at the limit: still fine
    assert not gate.observe(5.5, 100)
    assert not gate.observe(60.0, 100)
    assert not gate.due(61.0)
    assert gate.observe(61.0, 101)


def test_gate_rate_limits_pings() -> None:
    gate = WatchdogGate(stall_after_s=10.0, ping_every_s=2.0)
    pings = [t for t in range(10) if gate.observe(float(t), t)]
    assert pings == [0, 2, 4, 6, 8]
    assert not gate.due(9.0)
    assert gate.due(10.0)


def test_gate_heartbeat_keeps_silent_bus_alive_but_not_a_hung_decoder() -> None:
    """The documented rule: the loop heartbeat ticks only on turns with no work waiting."""
    gate = WatchdogGate(stall_after_s=3.0)
    frames = commits = heartbeat = 0
    pinged: list[bool] = []
    for second in range(20):
        queued = second >= 10  # from t=10 frames pile up: the decoder hangs
        if not queued:
            heartbeat += 1  # bus silent (ignition off), nothing waiting: healthy
        pinged.append(gate.observe(float(second), frames + commits + heartbeat))
    assert all(pinged[:10])
    # Last advance at t=9: pings go on up to the 3 s stall limit, then stop for good.
    assert pinged[10:13] == [True, True, True]
    assert not any(pinged[13:])


def test_gate_counter_reset_is_a_baseline_not_progress() -> None:
    gate = WatchdogGate(stall_after_s=1.0)
    assert gate.observe(0.0, 50)
    assert not gate.observe(2.0, 3)  # went down: no progress
    assert gate.observe(2.5, 4)


def test_gate_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="stall_after_s"):
        WatchdogGate(0)
    with pytest.raises(ValueError, match="ping_every_s"):
        WatchdogGate(1.0, ping_every_s=-1)


# --- Notifier: environment ---------------------------------------------------------------


def test_without_notify_socket_everything_is_a_noop() -> None:
    n = Notifier.from_env({"WATCHDOG_USEC": "30000000"})
    assert not n.enabled
    assert n.watchdog_interval_s is None
    assert not n.ready("x")
    assert not n.status("x")
    assert not n.watchdog()
    assert not n.stopping("x")
    assert n.errors == 0


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another pid
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    env: dict[str, str], interval: float | None
) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": "@x", **env})
    assert n.watchdog_interval_s == interval


def test_send_errors_are_counted_not_raised(tmp_path: Path) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert n.enabled
    assert not n.watchdog()
    assert n.errors == 1
    n.close()


def test_status_is_kept_on_one_line() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        name = f"@edge-agent-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + name[1:].encode())
        n = Notifier.from_env({"NOTIFY_SOCKET": name})
        assert n.status("outbox\n12 batches")
        sock.settimeout(2)
        assert sock.recv(4096) == b"STATUS=outbox 12 batches"
        n.close()


# --- The protocol, observed from a real process ------------------------------------------

STALL_AFTER_S = 0.4
RUN_S, STALL_S, RESUME_S = 0.8, 1.2, 0.6

# A stand-in main loop: processes "frames", stalls on purpose (the loop keeps turning,
# frames are waiting, so no heartbeat), resumes, then drains and stops.
DRIVER = f"""
import time
from daemon_kit.sdnotify import Notifier, WatchdogGate
n = Notifier.from_env()
assert n.watchdog_interval_s is not None
gate = WatchdogGate({STALL_AFTER_S}, ping_every_s=n.watchdog_interval_s)
n.ready("sources and outbox open")
frames, phase, start = 0, "run", time.monotonic()
for _ in range(10_000):
    t = time.monotonic() - start
    if t >= {RUN_S + STALL_S + RESUME_S}:
        break
    if {RUN_S} <= t < {RUN_S + STALL_S}:
        if phase != "stall":
            phase = "stall"
            n.status("decoder stalled on purpose")
    else:
        if phase == "stall":
            phase = "resumed"
            n.status("decoder resumed")
        frames += 1
    if gate.observe(time.monotonic(), frames):
        n.watchdog()
    time.sleep(0.01)
n.stopping("draining outbox")
"""


@pytest.mark.parametrize("kind", ["abstract", "path"])
def test_notify_protocol_from_a_real_process(tmp_path: Path, kind: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == "abstract":
        name = f"@edge-agent-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + name[1:].encode())
    else:
        name = str(tmp_path / "notify.sock")
        sock.bind(name)
    sock.settimeout(0.2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env |= {"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "100000"}  # ping every 50 ms
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=REPO, env=env)
    received: list[tuple[float, str]] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                data = sock.recv(4096)
            except TimeoutError:
                if proc.poll() is not None:
                    break
                continue
            received.append((time.monotonic(), data.decode()))
            if data.startswith(b"STOPPING=1"):
                break
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        sock.close()

    messages = [m for _, m in received]
    assert messages[0] == "READY=1\nSTATUS=sources and outbox open"
    assert messages[-1] == "STOPPING=1\nSTATUS=draining outbox"
    stall_at = next(t for t, m in received if m == "STATUS=decoder stalled on purpose")
    resume_at = next(t for t, m in received if m == "STATUS=decoder resumed")
    pings = [t for t, m in received if m == "WATCHDOG=1"]
    before = [t for t in pings if t < stall_at]
    during = [t for t in pings if stall_at <= t < resume_at]
    after = [t for t in pings if t >= resume_at]
    assert len(before) >= 5  # ~0.8 s at one ping per 50 ms
    # Pings go on only until the stall limit, then stop until work moves again.
    assert all(t - stall_at < STALL_AFTER_S + 0.25 for t in during)
    assert resume_at - stall_at > STALL_AFTER_S + 0.5
    assert len(after) >= 3
