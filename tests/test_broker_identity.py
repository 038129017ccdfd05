"""The shipped mosquitto configuration and ACL, enforced by a real mosquitto.

Certificates come from scripts/mint-certs.sh. The production mosquitto.conf is copied
with only its paths, port and log destination rewritten, so what is tested is what ships.
As root, mosquitto drops to the ``mosquitto`` user before loading certificates: the
broker's directory is handed to that user, exactly as docs/deployment.md says, and one
test shows that without it the broker does not start.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import queue
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from protocol.topics import collector_filters, topic
from tests.mosquitto_harness import MOSQUITTO, free_port, wait_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
FLEET = "seoul-north"
ME, OTHER, EXPIRED, FOREIGN = "taxi-0001", "taxi-0002", "taxi-0003", "taxi-0004"
WAIT_S = 5.0
NOT_AUTHORIZED = 0x87

if not Path(MOSQUITTO).exists():
    pytest.skip("mosquitto is not installed", allow_module_level=True)


def _mosquitto_uid() -> int | None:
    """The user a root-started mosquitto drops to, when we are root and it exists."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("mosquitto").pw_uid
    except KeyError:
        return None


@dataclass
class Broker:
    dir: Path
    certs: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "data/mosquitto.log").read_text(errors="replace")[-3000:]
        return ""


def shipped_config(broker_dir: Path, port: int) -> str:
    """mosquitto/mosquitto.conf with production paths and port moved into broker_dir."""
    text = (REPO / "mosquitto/mosquitto.conf").read_text()
    replacements = {
        "/etc/mosquitto/certs/": f"{broker_dir}/certs/",
        "/etc/mosquitto/acl": f"{broker_dir}/acl",
        "/var/lib/mosquitto/": f"{broker_dir}/data/",
        "log_dest stderr": f"log_dest file {broker_dir}/data/mosquitto.log",
        "listener 8883": f"listener {port} {HOST}",
    }
    for old, new in replacements.items():
        assert old in text, f"shipped mosquitto.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


def make_broker_dir(certs: Path, *, hand_to_mosquitto: bool) -> Broker:
    # Not under pytest's tmp_path: that is private to root, and the broker runs as mosquitto.
    broker_dir = Path(tempfile.mkdtemp(prefix="fleet-broker-"))
    port = free_port()
    (broker_dir / "certs").mkdir()
    (broker_dir / "data").mkdir()
    for name in ("fleet-ca.pem", "broker.pem", "broker.key"):
        shutil.copy(certs / name, broker_dir / "certs" / name)
    shutil.copy(REPO / "mosquitto/acl", broker_dir / "acl")
    (broker_dir / "mosquitto.conf").write_text(shipped_config(broker_dir, port))
    uid = _mosquitto_uid()
    if uid is not None and hand_to_mosquitto:
        # What the deployment does: the key stays 0600 but belongs to mosquitto, and the
        # persistence directory is mosquitto's to write.
        for path in [broker_dir, *broker_dir.rglob("*")]:
            os.chown(path, uid, -1)
    broker_dir.chmod(0o755)
    return Broker(broker_dir, certs, port)


def start(broker: Broker) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [MOSQUITTO, "-c", str(broker.dir / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    done = subprocess.run(
        ["bash", str(REPO / "scripts/mint-certs.sh"), str(out), ME, OTHER,
         "--expired", EXPIRED, "--other-ca", FOREIGN],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def broker(certs: Path) -> Iterator[Broker]:
    b = make_broker_dir(certs, hand_to_mosquitto=True)
    b.proc = start(b)
    try:
        assert wait_port(HOST, b.port, 10), b.log()
        yield b
    finally:
        stop(b.proc)
        shutil.rmtree(b.dir, ignore_errors=True)


@dataclass
class Client:
    """A paho MQTT 5 client over mutual TLS with its callbacks turned into queues."""

    mqttc: mqtt.Client
    connack: queue.Queue[int] = field(default_factory=queue.Queue)
    suback: queue.Queue[list[int]] = field(default_factory=queue.Queue)
    puback: dict[int, int] = field(default_factory=dict)
    puback_event: threading.Condition = field(default_factory=threading.Condition)
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)

    def publish(self, topic_name: str, payload: bytes) -> int:
        """Publish with QoS 1 and return the PUBACK reason code."""
        info = self.mqttc.publish(topic_name, payload, qos=1)
        with self.puback_event:
            assert self.puback_event.wait_for(lambda: info.mid in self.puback, WAIT_S)
            return self.puback.pop(info.mid)

    def subscribe(self, *filters: str) -> list[int]:
        """Subscribe with QoS 1 and return the SUBACK reason codes."""
        self.mqttc.subscribe([(f, 1) for f in filters])
        return self.suback.get(timeout=WAIT_S)

    def received(self, until_topic: str) -> list[tuple[str, bytes]]:
        """Messages up to and including the first one on ``until_topic`` (the marker)."""
        got: list[tuple[str, bytes]] = []
        for _ in range(100):
            got.append(self.messages.get(timeout=WAIT_S))
            if got[-1][0] == until_topic:
                return got
        raise AssertionError(f"no message on {until_topic}: {got}")


def _client(cert: Path, key: Path, ca: Path, name: str) -> Client:
    mqttc = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{name}-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=False,
    )
    mqttc.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key))
    c = Client(mqttc)

    def on_connect(_c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        c.connack.put(rc.value)

    def on_disconnect(_c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        c.connack.put(-1 if rc.value == 0 else rc.value)

    def on_subscribe(_c: Any, _u: Any, _m: int, rcs: list[ReasonCode], _p: Any) -> None:
        c.suback.put([rc.value for rc in rcs])

    def on_publish(_c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Properties) -> None:
        with c.puback_event:
            c.puback[mid] = rc.value
            c.puback_event.notify_all()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        c.messages.put((msg.topic, bytes(msg.payload)))

    mqttc.on_connect = on_connect
    mqttc.on_disconnect = on_disconnect
    mqttc.on_subscribe = on_subscribe
    mqttc.on_publish = on_publish
    mqttc.on_message = on_message
    return c


def try_connect(c: Client, port: int) -> int | str:
    """CONNACK reason code (0: connected), or why the TLS handshake failed."""
    try:
        c.mqttc.connect(HOST, port, keepalive=30)
    except (ssl.SSLError, OSError) as exc:
        return f"tls: {exc}"
    c.mqttc.loop_start()
    try:
        return c.connack.get(timeout=WAIT_S)
    except queue.Empty:
        return "no CONNACK"


@contextlib.contextmanager
def connected(broker: Broker, name: str, cert_base: Path | None = None) -> Iterator[Client]:
    base = cert_base or broker.certs / name
    c = _client(base.with_suffix(".pem"), base.with_suffix(".key"), broker.certs / "fleet-ca.pem",
                name)  # fmt: skip
    try:
        assert try_connect(c, broker.port) == 0, broker.log()
        yield c
    finally:
        c.mqttc.disconnect()
        c.mqttc.loop_stop()


def test_vehicle_publishes_its_own_topics_and_the_collector_receives(broker: Broker) -> None:
    with connected(broker, "collector-1") as collector, connected(broker, ME) as vehicle:
        assert collector.subscribe(*collector_filters("collectors")) == [1, 1, 1, 1]
        own = [topic(FLEET, ME, ch) for ch in ("status", "health", "event", "batch")]
        for t in own:
            assert vehicle.publish(t, t.encode()) == 0
        got = collector.received(until_topic=own[-1])
        assert got == [(t, t.encode()) for t in own]


def test_vehicle_cannot_publish_as_another_vehicle(broker: Broker) -> None:
    with connected(broker, "collector-1") as collector, connected(broker, ME) as vehicle:
        assert collector.subscribe(*collector_filters("collectors")) == [1, 1, 1, 1]
        forged = topic(FLEET, OTHER, "batch")
        # mosquitto 2.0.11 refuses it in the PUBACK (MQTT 5 reason 0x87 Not authorized)
        # and keeps the connection open; the message goes nowhere.
        assert vehicle.publish(forged, b"forged") == NOT_AUTHORIZED
        assert vehicle.mqttc.is_connected()
        marker = topic(FLEET, ME, "batch")
        assert vehicle.publish(marker, b"marker") == 0
        assert collector.received(until_topic=marker) == [(marker, b"marker")]


def test_vehicle_cannot_forge_acks(broker: Broker) -> None:
    with connected(broker, ME) as vehicle:
        assert vehicle.publish(topic(FLEET, ME, "ack"), b"self-ack") == NOT_AUTHORIZED


def test_vehicle_reads_only_its_own_ack(broker: Broker) -> None:
    with connected(broker, "collector-1") as collector, connected(broker, ME) as vehicle:
        own_ack, other_ack = topic(FLEET, ME, "ack"), topic(FLEET, OTHER, "ack")
        # mosquitto 2.0.11's acl_file grants the SUBACK even for a topic the client may
        # not read, and enforces "read" on every delivery instead: nothing arrives.
        assert vehicle.subscribe(own_ack, other_ack) == [1, 1]
        assert collector.publish(other_ack, b"not yours") == 0
        assert collector.publish(own_ack, b"yours") == 0
        assert vehicle.received(until_topic=own_ack) == [(own_ack, b"yours")]


def test_collector_cannot_impersonate_a_vehicle(broker: Broker) -> None:
    with connected(broker, "collector-1") as collector:
        assert collector.publish(topic(FLEET, ME, "batch"), b"x") == NOT_AUTHORIZED


@pytest.mark.parametrize("which", ["expired", "other-ca"])
def test_untrusted_certificates_cannot_connect(broker: Broker, which: str) -> None:
    vehicle = EXPIRED if which == "expired" else FOREIGN
    base = broker.certs / which / vehicle
    failures_before = broker.log().count("certificate verify failed")
    c = _client(base.with_suffix(".pem"), base.with_suffix(".key"), broker.certs / "fleet-ca.pem",
                vehicle)  # fmt: skip
    try:
        # With TLS 1.3 the client's handshake completes before the broker has checked the
        # certificate; the broker then drops the connection, so no CONNACK ever comes.
        outcome = try_connect(c, broker.port)
    finally:
        c.mqttc.disconnect()
        c.mqttc.loop_stop()
    assert outcome != 0
    for _ in range(50):  # the broker's log line may lag the disconnect a little
        if broker.log().count("certificate verify failed") > failures_before:
            break
        time.sleep(0.05)
    assert broker.log().count("certificate verify failed") == failures_before + 1


@pytest.mark.skipif(_mosquitto_uid() is None, reason="needs root and a mosquitto user")
def test_broker_runs_as_mosquitto(broker: Broker) -> None:
    assert broker.proc is not None
    status = Path(f"/proc/{broker.proc.pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert {int(u) for u in uids} == {_mosquitto_uid()}


@pytest.mark.skipif(_mosquitto_uid() is None, reason="needs root and a mosquitto user")
def test_broker_needs_its_files_readable_by_the_mosquitto_user(certs: Path) -> None:
    """Started as root, mosquitto drops to "mosquitto" first: a root-only key stops it."""
    b = make_broker_dir(certs, hand_to_mosquitto=False)
    (b.dir / "certs/broker.key").chmod(0o600)
    proc = start(b)
    try:
        proc.wait(10)
        assert proc.returncode not in (0, None)
        assert proc.stderr is not None
        assert "broker.key" in proc.stderr.read().decode(errors="replace") + b.log()
    finally:
        stop(proc)
        shutil.rmtree(b.dir, ignore_errors=True)
