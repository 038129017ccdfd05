"""The link impairment proxy itself, against a local echo server: each impairment does
what it says, measured."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from harness.faults.proxy import BLACKHOLE, REFUSE, LinkProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    port: int = server.getsockname()[1]
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = server.accept()
                threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join(5)
    server.close()


def _roundtrip(sock: socket.socket, n: int) -> float:
    t0 = time.monotonic()
    sock.sendall(b"x" * n)
    got = 0
    while got < n:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        got += len(chunk)
    return time.monotonic() - t0


def test_latency_jitter_and_rate(echo_port: int) -> None:
    with LinkProxy(echo_port) as link, socket.create_connection(("127.0.0.1", link.port)) as s:
        s.settimeout(10)
        assert _roundtrip(s, 100) < 0.1
        link.set(latency_s=0.2)
        assert 0.4 <= _roundtrip(s, 100) < 0.7  # 0.2 s each way
        link.set(latency_s=0.0, jitter_s=0.3)
        assert _roundtrip(s, 100) < 0.8
        link.set(jitter_s=0.0, rate_bytes_per_s=2048)
        # 6 kB each way at 2 kB/s; both directions overlap: about 3 s, never under 2.5.
        assert 2.5 <= _roundtrip(s, 6144) < 5.0
        assert link.counters.bytes_up == link.counters.bytes_down == 100 * 3 + 6144


def test_stall_holds_and_releases(echo_port: int) -> None:
    with LinkProxy(echo_port) as link, socket.create_connection(("127.0.0.1", link.port)) as s:
        s.settimeout(0.5)
        _roundtrip(s, 10)
        link.stall(True)
        s.sendall(b"held")
        with pytest.raises(TimeoutError):
            s.recv(10)
        link.stall(False)
        s.settimeout(5)
        assert s.recv(10) == b"held"  # nothing lost, the socket stayed open


def test_refuse_partition_drops_and_refuses(echo_port: int) -> None:
    with LinkProxy(echo_port) as link, socket.create_connection(("127.0.0.1", link.port)) as s:
        s.settimeout(5)
        _roundtrip(s, 10)
        link.partition(REFUSE)
        with contextlib.suppress(ConnectionResetError):  # closed under it: reset or EOF
            assert s.recv(10) == b""
        with socket.create_connection(("127.0.0.1", link.port)) as again:
            again.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                assert again.recv(10) == b""
        assert link.counters.refused == 1
        link.partition(None)
        with socket.create_connection(("127.0.0.1", link.port)) as healed:
            healed.settimeout(5)
            assert _roundtrip(healed, 10) < 1


def test_blackhole_swallows_then_closes_on_heal(echo_port: int) -> None:
    with LinkProxy(echo_port) as link, socket.create_connection(("127.0.0.1", link.port)) as s:
        s.settimeout(0.5)
        _roundtrip(s, 10)
        link.partition(BLACKHOLE)
        s.sendall(b"gone")
        with pytest.raises(TimeoutError):
            s.recv(10)
        link.partition(None)
        s.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(10) == b""
        assert link.counters.bytes_blackholed == 4


def test_drops_close_both_sides(echo_port: int) -> None:
    with LinkProxy(echo_port) as link, socket.create_connection(("127.0.0.1", link.port)) as s:
        s.settimeout(5)
        _roundtrip(s, 10)
        link.drop()
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(10) == b""
        deadline = time.monotonic() + 5
        while link.connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert link.connections == 0
        assert link.counters.dropped == 1
