"""Helpers shared by the collector tests: payloads (good and hostile), a publisher that
behaves like an agent (resend until acknowledged end to end), and a collector process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import aiomqtt
import httpx
import msgpack
import zstandard

from protocol import (
    Batch,
    Event,
    FrameRef,
    GnssFix,
    SignalSeries,
    decode_ack,
    encode_batch,
)
from protocol.envelope import header_to_wire

REPO = Path(__file__).resolve().parent.parent
T0 = 1_772_436_600_000  # 2026-03-02T07:30:00Z, the fixture drive's start
FLEET = "demo"


def make_batch(vehicle: str, epoch: int, seq: int, *, events: int = 2, samples: int = 20) -> Batch:
    """A small batch shaped like a real one: a speed series, GNSS-tagged events."""
    base = T0 + seq * 10_000
    fix = GnssFix(base, 37.5648 + seq * 1e-4, 126.9781, 3, 30.0, 8.0, 10.0, 0)
    evts = [
        Event(
            "fcw" if i % 2 == 0 else "ldw_left",
            base + 100 * i,
            50.0 + i,
            fix if i % 3 != 2 else None,
            FrameRef("can0", 0x700),
            {"sound_code": 4, "seq_in_test": seq},
        )
        for i in range(events)
    ]
    sig = SignalSeries(
        "vehicle_speed",
        tuple(base + 50 * i for i in range(samples)),
        tuple(float(i) for i in range(samples)),
        "km/h",
    )
    return Batch.build(
        fleet_id=FLEET,
        vehicle_id=vehicle,
        epoch=epoch,
        seq=seq,
        sent_ms=base + 10_000,
        signals=[sig],
        events=evts,
        gnss=[fix],
    )


def payload(vehicle: str, epoch: int, seq: int, **kw: int) -> bytes:
    return encode_batch(make_batch(vehicle, epoch, seq, **kw))


def _envelope(batch: Batch, frame: bytes, **override: object) -> bytes:
    fields: dict[str, object] = {**header_to_wire(batch.header), "body": frame, **override}
    out = msgpack.packb(fields, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


@cache
def _zeros_frame() -> bytes:
    """One zstd frame of 2 GiB of zeros (about 64 KiB), made streaming: never in memory."""
    c = zstandard.ZstdCompressor(level=3, write_content_size=False).compressobj()
    chunk = bytes(16 << 20)
    return b"".join(c.compress(chunk) for _ in range(128)) + c.flush()


def zstd_bomb(vehicle: str, epoch: int, seq: int) -> bytes:
    """A valid envelope whose body inflates to 2 GiB."""
    return _envelope(make_batch(vehicle, epoch, seq), _zeros_frame())


def oversize(vehicle: str, epoch: int, seq: int) -> bytes:
    """Over the 1 MiB payload limit (incompressible filler in the body frame)."""
    return _envelope(make_batch(vehicle, epoch, seq), os.urandom((1 << 20) + 10))


def unknown_version(vehicle: str, epoch: int, seq: int) -> bytes:
    return _envelope(make_batch(vehicle, epoch, seq), b"\x00", v=3, extra="future")


def wrong_vehicle(topic_vehicle: str, epoch: int, seq: int) -> bytes:
    """A payload claiming to be another vehicle than the topic's."""
    return payload(topic_vehicle + "-other", epoch, seq)


def bad_body(vehicle: str, epoch: int, seq: int) -> bytes:
    """Readable identity, but the body is not zstd."""
    return _envelope(make_batch(vehicle, epoch, seq), b"not zstd at all")


GARBAGE = b"\x93\x01garbage\xff\xc1"


# ---------------------------------------------------------------- agent-like publisher


@dataclass
class AckTracker:
    """Highest end-to-end acked seq per (vehicle, epoch)."""

    acked: dict[tuple[str, int], int] = field(default_factory=dict)
    count: int = 0
    regressions: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def feed(self, data: bytes) -> None:
        ack = decode_ack(data)
        key = (ack.vehicle_id, ack.epoch)
        if ack.seq < self.acked.get(key, 0):
            # Legal (the agent ignores it), and expected from SEVERAL collectors: each
            # publishes after its own commit. One collector alone never goes backwards.
            self.regressions += 1
        self.acked[key] = max(ack.seq, self.acked.get(key, 0))
        self.count += 1
        self.changed.set()

    def done(self, expected: dict[tuple[str, int], int]) -> bool:
        return all(self.acked.get(k, 0) >= n for k, n in expected.items())


async def publish_until_acked(
    port: int,
    items: Iterable[tuple[str, int, int]],
    *,
    timeout_s: float = 60.0,
    resend_after_s: float = 3.0,
    client_id: str = "test-agent",
    tracker: AckTracker | None = None,
) -> AckTracker:
    """Publish batches (vehicle, epoch, seq) like an agent: QoS 1, and re-publish whatever
    is not acknowledged end to end after ``resend_after_s``, until all are acked."""
    todo = list(items)
    expected: dict[tuple[str, int], int] = {}
    for vehicle, epoch, seq in todo:
        expected[(vehicle, epoch)] = max(expected.get((vehicle, epoch), 0), seq)
    payloads = {(v, e, s): payload(v, e, s) for v, e, s in todo}
    tracker = tracker if tracker is not None else AckTracker()
    deadline = time.monotonic() + timeout_s
    rounds = 0
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(f"fleet/{FLEET}/+/ack", qos=1)

        async def read_acks() -> None:
            async for msg in client.messages:
                assert isinstance(msg.payload, bytes)
                tracker.feed(msg.payload)

        reader = asyncio.create_task(read_acks())
        try:
            while not tracker.done(expected) and time.monotonic() < deadline and rounds < 100:
                rounds += 1
                pending = [k for k in payloads if tracker.acked.get((k[0], k[1]), 0) < k[2]]
                with contextlib.suppress(aiomqtt.MqttError):
                    for v, e, s in pending:
                        await client.publish(f"fleet/{FLEET}/{v}/batch", payloads[(v, e, s)], qos=1)
                until = min(deadline, time.monotonic() + resend_after_s)
                while time.monotonic() < until and not tracker.done(expected):
                    tracker.changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(tracker.changed.wait(), until - time.monotonic())
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader
    return tracker


# ---------------------------------------------------------------- collector process


def write_config(
    path: Path,
    *,
    mqtt_port: int,
    http_port: int,
    store_url: str,
    client_id: str = "collector-1",
    http_extra: str = "",
    api_processes: int | None = 0,
) -> Path:
    """A collector config for tests; ``http_extra``: more ``[http]`` lines. The API runs
    in the collector's process unless ``api_processes`` (``[http] processes``) says
    otherwise: a test starts one process, not two, unless it tests the API processes.
    None leaves the key out (a collector from before the key existed)."""
    processes = "" if api_processes is None else f"processes = {api_processes}"
    path.write_text(
        f"""
[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
group = "testers"
client_id = "{client_id}"
keepalive_s = 5
reconnect_min_s = 0.1
reconnect_max_s = 1.0

[store]
url = "{store_url}"

[http]
listen = "127.0.0.1:{http_port}"
{processes}
{http_extra}

[log]
level = "warning"

# Kept for ever: the fixture drives and test batches are dated March 2026, older than
# the retention settings, and a rig compares the store with what was sent.
[retention]
samples_days = 0
gnss_days = 0
events_days = 0
health_days = 0
quarantine_days = 0
cell_vehicles_days = 0
"""
    )
    return path


class CollectorProcess:
    """``cloud-collector run --config FILE`` as a child process. Its HTTP API is reached
    through ``get`` (HTTPS verified against ``tls_ca`` when given; ``token`` as the bearer
    token, or an admin token minted at the first request): the one place a header every
    request needs goes."""

    def __init__(
        self,
        config: Path,
        http_port: int,
        log_path: Path,
        *,
        tls_ca: Path | None = None,
        token: str | None = None,
    ) -> None:
        self.config = config
        self.http_port = http_port
        self.log_path = log_path
        self.tls_ca = tls_ca
        self.proc: subprocess.Popen[bytes] | None = None
        self._token: str | None = token

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls_ca is not None else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    def start(self, timeout_s: float = 60.0) -> None:
        """Start it and wait for /readyz (on a loaded 2-core machine the start alone has
        taken 17 s: the bound is generous, the wait ends as soon as it answers)."""
        # Minted before the collector runs (a test may lock the store later); a store not
        # reachable now (a fault test) gets it at the first request instead.
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.token()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cloud_collector.cli", "run", "--config", str(self.config)],
            cwd=self.config.parent,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited: {self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                r = self.request("/readyz", {}, timeout_s=1, authed=False)
                if r.status_code == 200:
                    return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"collector not ready: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    def terminate(self, timeout_s: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def token(self) -> str:
        """An admin token of this collector's store, minted at the first call with
        ``cloud-collector token create`` (the collector reads it from the store)."""
        if self._token is None:
            self._token = mint_token(self.config, f"harness-admin-{secrets.token_hex(4)}")
        return self._token

    def headers(self) -> dict[str, str]:
        """The headers of an authenticated request (the admin token)."""
        return {"Authorization": f"Bearer {self.token()}"}

    def get(self, path: str, **params: str) -> httpx.Response:
        return self.request(path, params)

    def request(
        self, path: str, params: dict[str, str], timeout_s: float = 10, authed: bool = True
    ) -> httpx.Response:
        verify: ssl.SSLContext | bool = True
        if self.tls_ca is not None:
            verify = ssl.create_default_context(cafile=str(self.tls_ca))
        return httpx.get(
            f"{self.base_url}{path}",
            params=params,
            headers=self.headers() if authed else {},
            timeout=timeout_s,
            verify=verify,
        )


def mint_token(config: Path, name: str, role: str = "admin", fleets: Iterable[str] = ()) -> str:
    """A new token in the store ``config`` names (``cloud-collector token create``)."""
    args = [sys.executable, "-m", "cloud_collector.cli", "token", "create", "--config",
            str(config), "--role", role, "--name", name]  # fmt: skip
    for fleet in fleets:
        args += ["--fleet", fleet]
    done = subprocess.run(
        args, check=False, cwd=config.parent, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"token create failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]
