"""The shipped mosquitto configuration and ACL, enforced by a real mosquitto.

Certificates come from scripts/mint-certs.sh. The production mosquitto.conf is copied
with only its paths, port and log destination rewritten, so what is tested is what ships.
As root, mosquitto drops to the ``mosquitto`` user before loading certificates: the
broker's directory is handed to that user, exactly as docs/deployment.md says, and one
test shows that without it the broker does not start.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import pwd
import queue
import shutil
import signal
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
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud_collector.config import MqttConfig
from edge_agent.uplink import UplinkSettings
from harness.agent import EDGE_AGENT, replay_config_toml
from harness.agent import FIXTURE as DRIVE
from harness.collector import CollectorProcess
from harness.mosquitto import MOSQUITTO, free_port, wait_port
from protocol.limits import MAX_PAYLOAD_BYTES
from protocol.topics import collector_filters, topic

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
FLEET = "seoul-north"
ME, OTHER, EXPIRED, FOREIGN = "taxi-0001", "taxi-0002", "taxi-0003", "taxi-0004"
E2E = "taxi-0005"  # the real edge agent's certificate, used by nothing else


def cn(vehicle: str, fleet: str = FLEET) -> str:
    """A vehicle certificate's CN, which is also its path under the minted directory."""
    return f"{fleet}/{vehicle}"


WAIT_S = 5.0
NOT_AUTHORIZED = 0x87
QOS_NOT_SUPPORTED = 0x9B
MAX_KEEPALIVE_S = 300

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
        ["bash", str(REPO / "scripts/mint-certs.sh"), str(out), cn(ME), cn(OTHER),
         cn(ME, "other-fleet"), cn(E2E), "--expired", cn(EXPIRED), "--other-ca", cn(FOREIGN)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # A second collector instance's certificate, for the real collector process.
    done = subprocess.run(
        ["bash", str(REPO / "scripts/mint-certs.sh"), str(out)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "COLLECTOR_CN": "collector-2"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


@contextlib.contextmanager
def running_broker(certs: Path) -> Iterator[Broker]:
    """The shipped configuration, started as deployed."""
    b = make_broker_dir(certs, hand_to_mosquitto=True)
    b.proc = start(b)
    try:
        assert wait_port(HOST, b.port, 10), b.log()
        yield b
    finally:
        stop(b.proc)
        shutil.rmtree(b.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def broker(certs: Path) -> Iterator[Broker]:
    with running_broker(certs) as b:
        yield b


@dataclass
class Client:
    """A paho MQTT 5 client over mutual TLS with its callbacks turned into queues."""

    mqttc: mqtt.Client
    connack: queue.Queue[int] = field(default_factory=queue.Queue)
    suback: queue.Queue[list[int]] = field(default_factory=queue.Queue)
    puback: dict[int, int] = field(default_factory=dict)
    puback_event: threading.Condition = field(default_factory=threading.Condition)
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)
    session_present: list[bool] = field(default_factory=list)
    server_keepalive: list[int | None] = field(default_factory=list)

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


def _client(cert: Path, key: Path, ca: Path, name: str, client_id: str | None = None) -> Client:
    mqttc = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"{name}-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=False,
    )
    mqttc.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key))
    c = Client(mqttc)

    def on_connect(_c: Any, _u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        c.session_present.append(bool(flags.session_present))
        c.server_keepalive.append(getattr(props, "ServerKeepAlive", None))
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


def try_connect(
    c: Client, port: int, session_expiry_s: int | None = None, keepalive: int = 30
) -> int | str:
    """CONNACK reason code (0: connected), or why the TLS handshake failed.

    With ``session_expiry_s``, a persistent session as the agent and the collector ask for
    (clean start off, session expiry set).
    """
    props: Properties | None = None
    if session_expiry_s is not None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = session_expiry_s
    try:
        c.mqttc.connect(
            HOST, port, keepalive=keepalive, clean_start=props is None, properties=props
        )
    except (ssl.SSLError, OSError) as exc:
        return f"tls: {exc}"
    c.mqttc.loop_start()
    try:
        return c.connack.get(timeout=WAIT_S)
    except queue.Empty:
        return "no CONNACK"


@contextlib.contextmanager
def connected(
    broker: Broker,
    name: str,
    cert_base: Path | None = None,
    *,
    client_id: str | None = None,
    session_expiry_s: int | None = None,
    keepalive: int = 30,
) -> Iterator[Client]:
    base = cert_base or broker.certs / name
    c = _client(base.with_suffix(".pem"), base.with_suffix(".key"), broker.certs / "fleet-ca.pem",
                name, client_id)  # fmt: skip
    try:
        assert try_connect(c, broker.port, session_expiry_s, keepalive) == 0, broker.log()
        yield c
    finally:
        c.mqttc.disconnect()
        c.mqttc.loop_stop()


def test_vehicle_publishes_its_own_topics_and_the_collector_receives(broker: Broker) -> None:
    with connected(broker, "collector-1") as collector, connected(broker, cn(ME)) as vehicle:
        assert collector.subscribe(*collector_filters("collectors")) == [1, 1, 1, 1]
        own = [topic(FLEET, ME, ch) for ch in ("status", "health", "event", "batch")]
        for t in own:
            assert vehicle.publish(t, t.encode()) == 0
        got = collector.received(until_topic=own[-1])
        assert got == [(t, t.encode()) for t in own]


def test_vehicle_cannot_publish_as_another_vehicle(broker: Broker) -> None:
    with connected(broker, "collector-1") as collector, connected(broker, cn(ME)) as vehicle:
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
    with connected(broker, cn(ME)) as vehicle:
        assert vehicle.publish(topic(FLEET, ME, "ack"), b"self-ack") == NOT_AUTHORIZED


def test_vehicle_reads_only_its_own_ack(broker: Broker) -> None:
    with connected(broker, "collector-1") as collector, connected(broker, cn(ME)) as vehicle:
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
    base = broker.certs / which / cn(vehicle)
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


def _still_connected(c: Client, own_topic: str) -> bool:
    """A QoS 1 round trip succeeds and no DISCONNECT (e.g. 0x8E Session taken over) came."""
    info = c.mqttc.publish(own_topic, b"still here", qos=1)
    with c.puback_event:
        acked = c.puback_event.wait_for(lambda: info.mid in c.puback, WAIT_S)
    # 0x10 (no matching subscribers) is a success too: reason codes below 0x80 are.
    return acked and c.puback.pop(info.mid) < 0x80 and c.connack.empty()


# What the real programs ask the broker for: the collector's configured client id, and
# the id the edge agent derives from its fleet and vehicle.
COLLECTOR_ASKS = MqttConfig().client_id
OTHER_ASKS = UplinkSettings(fleet_id=FLEET, vehicle_id=OTHER, host=HOST, port=1).client_id


@pytest.mark.parametrize(
    ("victim", "claimed"),
    [
        ("collector-1", COLLECTOR_ASKS),
        (cn(OTHER), OTHER_ASKS),
        # The id the broker now gives the other taxi's session (its CN).
        (cn(OTHER), cn(OTHER)),
        # The same vehicle id in another fleet is another identity.
        (cn(ME, "other-fleet"), cn(ME, "other-fleet")),
    ],
    ids=["collector", "other-taxi", "other-taxi-cn", "same-id-other-fleet"],
)
def test_vehicle_certificate_cannot_take_over_another_client_id(
    broker: Broker, victim: str, claimed: str
) -> None:
    own = topic(FLEET, ME, "ack") if victim == "collector-1" else f"fleet/{victim}/status"
    with connected(broker, victim, client_id=claimed) as real:
        assert _still_connected(real, own)
        # The rogue holds a valid vehicle certificate and asks for the victim's client id.
        with connected(broker, cn(ME), client_id=claimed):
            assert _still_connected(real, own), broker.log()


def test_vehicle_cannot_publish_into_another_fleet(broker: Broker) -> None:
    with connected(broker, "collector-1") as collector, connected(broker, cn(ME)) as vehicle:
        assert collector.subscribe(*collector_filters("collectors")) == [1, 1, 1, 1]
        for ch in ("batch", "event", "health", "status"):
            assert vehicle.publish(topic("other-fleet", ME, ch), b"forged") == NOT_AUTHORIZED
        marker = topic(FLEET, ME, "batch")
        assert vehicle.publish(marker, b"marker") == 0
        assert collector.received(until_topic=marker) == [(marker, b"marker")]


def test_a_vehicle_session_survives_reconnects_under_its_certificate(broker: Broker) -> None:
    """The broker keys the session by the certificate, whatever client id is asked for:
    acks published while the taxi is away still wait for it."""
    ack = topic(FLEET, ME, "ack")
    with connected(broker, cn(ME), client_id="agent-first", session_expiry_s=60) as vehicle:
        assert vehicle.subscribe(ack) == [1]
    with connected(broker, "collector-1") as collector:
        # 0, not 0x10 (no matching subscribers): the away session's subscription matched.
        assert collector.publish(ack, b"while away") == 0
    # Expiry 0 on this connect: the session ends with it and leaves nothing behind.
    with connected(broker, cn(ME), client_id="agent-second", session_expiry_s=0) as vehicle:
        assert vehicle.session_present == [True]
        assert vehicle.received(until_topic=ack) == [(ack, b"while away")]


def _collector_toml(broker: Broker, http_port: int, store: Path) -> str:
    certs = broker.certs
    # No client_id: the configured one ("collector-1") is not this certificate's CN, and the
    # broker's replacement of it must not matter.
    return f"""
[mqtt]
host = "{HOST}"
port = {broker.port}
tls_ca = "{certs / "fleet-ca.pem"}"
tls_cert = "{certs / "collector-2.pem"}"
tls_key = "{certs / "collector-2.key"}"
keepalive_s = 5
session_expiry_s = 60
reconnect_min_s = 0.1
reconnect_max_s = 1.0

[store]
url = "sqlite:///{store}"

[http]
listen = "{HOST}:{http_port}"

[log]
level = "warning"

[retention]
events_days = 0
"""


def test_collector_and_agent_end_to_end_through_the_shipped_config(
    certs: Path, tmp_path: Path
) -> None:
    """The real collector and a real agent replay, over mutual TLS with the shipped config,
    while a rogue vehicle certificate asks for both their client ids: every batch is acked
    end to end, the collector stays on its first connection, and the events arrive."""
    # A broker of its own: the sessions and retained presence this test leaves behind
    # would otherwise take part in the other tests.
    with running_broker(certs) as broker:
        _end_to_end(broker, tmp_path)


def _end_to_end(broker: Broker, tmp_path: Path) -> None:
    recording = tmp_path / "drive.log"
    with DRIVE.open() as src, recording.open("w") as dst:
        dst.writelines(itertools.islice(src, 20_000))  # ~1 min of the drive
    http_port = free_port()
    config = tmp_path / "collector.toml"
    config.write_text(_collector_toml(broker, http_port, tmp_path / "store.sqlite3"))
    collector = CollectorProcess(config, http_port, tmp_path / "collector.log")
    collector.start()
    agent_asks = UplinkSettings(fleet_id=FLEET, vehicle_id=E2E, host=HOST, port=1).client_id
    try:
        with contextlib.ExitStack() as rogues:
            for claimed in (COLLECTOR_ASKS, "collector-2", agent_asks, cn(E2E)):
                rogues.enter_context(connected(broker, cn(ME), client_id=claimed))
            certs = broker.certs
            agent_toml = tmp_path / "agent.toml"
            agent_toml.write_text(
                replay_config_toml(
                    vehicle=E2E,
                    fleet=FLEET,
                    recording=recording,
                    outbox=tmp_path / "outbox.sqlite3",
                    mqtt_port=broker.port,
                    mqtt_extra=(
                        f'tls_ca = "{certs / "fleet-ca.pem"}"\n'
                        f'tls_cert = "{certs / cn(E2E)}.pem"\n'
                        f'tls_key = "{certs / cn(E2E)}.key"\n'
                    ),
                )
            )
            done = subprocess.run(
                [str(EDGE_AGENT), "replay", str(recording), "--config", str(agent_toml),
                 "--speed", "0", "--timeout", "30"],
                capture_output=True, timeout=90, cwd=tmp_path, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr.decode()[-3000:] + broker.log()
        metrics = collector.get("/metrics").text
        assert "\ncollector_mqtt_connects_total 1\n" in metrics, broker.log()
        vehicle = collector.get(f"/v1/vehicles/{E2E}").json()
        assert vehicle["batches_total"] >= 1
        events = collector.get("/v1/events", vehicle=E2E, limit="1000").json()["features"]
        decoded = subprocess.run(
            [str(EDGE_AGENT), "decode", str(recording)],
            capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        expected = sorted(
            json.loads(line)["type"] for line in decoded.stdout.decode().splitlines() if line
        )
        assert expected
        assert sorted(f["properties"]["type"] for f in events) == expected
        assert collector.terminate() == 0
    finally:
        collector.kill()


def test_payloads_beyond_the_protocol_limit_never_reach_the_collector(broker: Broker) -> None:
    batch, marker = topic(FLEET, ME, "batch"), topic(FLEET, OTHER, "batch")
    with connected(broker, "collector-1") as collector, connected(broker, cn(OTHER)) as other:
        assert collector.subscribe(*collector_filters("collectors")) == [1, 1, 1, 1]
        with connected(broker, cn(ME)) as vehicle:
            # The largest payload the protocol allows goes through.
            assert vehicle.publish(batch, bytes(MAX_PAYLOAD_BYTES)) == 0
            assert collector.received(until_topic=batch) == [(batch, bytes(MAX_PAYLOAD_BYTES))]
        # One byte more is refused by message_size_limit, in a PUBACK with reason 0x95,
        # which MQTT 5 does not allow in a PUBACK: paho takes it as a malformed packet and
        # drops the connection. Far more is refused by max_packet_size, which disconnects
        # the sender as soon as the length header is read.
        for size in (MAX_PAYLOAD_BYTES + 1, 2 * MAX_PAYLOAD_BYTES):
            with connected(broker, cn(ME)) as vehicle:
                vehicle.mqttc.publish(batch, bytes(size), qos=1)
                assert vehicle.connack.get(timeout=WAIT_S) != 0, size
            assert other.publish(marker, b"marker") == 0
            assert collector.received(until_topic=marker) == [(marker, b"marker")]
        oversize = f"Client {cn(ME)} disconnected due to oversize packet."
        for _ in range(50):  # the broker's log line may lag the disconnect a little
            if oversize in broker.log():
                break
            time.sleep(0.05)
        assert oversize in broker.log()


@pytest.mark.parametrize("asked", [0, 3600])
def test_keepalive_is_bounded_by_the_broker(broker: Broker, asked: int) -> None:
    """No keep-alive (0) or a very long one would keep a dead taxi "connected", its will
    unsent, for that long; the broker answers with its maximum instead."""
    with connected(broker, cn(ME), keepalive=asked) as vehicle:
        assert vehicle.server_keepalive == [MAX_KEEPALIVE_S]
    with connected(broker, cn(ME), keepalive=120) as vehicle:
        assert vehicle.server_keepalive == [None]  # the agent's default stands


def test_a_qos_2_publish_costs_the_sender_its_connection(broker: Broker) -> None:
    """The protocol uses QoS 1 only; QoS 2 would only make the broker keep state."""
    with connected(broker, cn(ME)) as vehicle:
        vehicle.mqttc.publish(topic(FLEET, ME, "batch"), b"x", qos=2)
        assert vehicle.connack.get(timeout=WAIT_S) == QOS_NOT_SUPPORTED


def test_a_collector_can_clear_a_retained_status(broker: Broker) -> None:
    """What a vehicle left retained on its status topic that is not a presence, the
    collector deletes (an empty retained message), so it is not delivered again."""
    status = topic(FLEET, OTHER, "status")
    with connected(broker, cn(OTHER)) as vehicle:
        info = vehicle.mqttc.publish(status, b"junk", qos=1, retain=True)
        info.wait_for_publish(WAIT_S)
    with connected(broker, "collector-1") as collector:
        assert collector.subscribe(status) == [1]
        assert collector.received(until_topic=status) == [(status, b"junk")]
        info = collector.mqttc.publish(status, b"", qos=1, retain=True)
        with collector.puback_event:
            assert collector.puback_event.wait_for(lambda: info.mid in collector.puback, WAIT_S)
        assert collector.puback.pop(info.mid) < 0x80
    with connected(broker, "collector-1") as collector, connected(broker, cn(OTHER)) as vehicle:
        assert collector.subscribe(status) == [1]
        marker = topic(FLEET, OTHER, "status")
        assert vehicle.publish(marker, b"marker") == 0  # not retained
        assert collector.received(until_topic=marker) == [(marker, b"marker")]


def test_one_certificate_is_cut_off_by_an_acl_deny_and_a_reload(certs: Path) -> None:
    """The documented response to a rogue certificate: its publishes stop reaching anyone
    at the reload, while the broker and every other client carry on."""
    with (
        running_broker(certs) as b,
        connected(b, "collector-1") as collector,
        connected(b, cn(ME)) as rogue,
        connected(b, cn(OTHER)) as honest,
    ):
        assert collector.subscribe(*collector_filters("collectors")) == [1, 1, 1, 1]
        mine, marker = topic(FLEET, ME, "batch"), topic(FLEET, OTHER, "batch")
        assert rogue.publish(mine, b"before") == 0
        assert collector.received(until_topic=mine) == [(mine, b"before")]
        with (b.dir / "acl").open("a") as acl:
            acl.write(f"\nuser {cn(ME)}\ntopic deny #\n")
        assert b.proc is not None
        b.proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            if "Reloading config." in b.log():
                break
            time.sleep(0.05)
        assert "Reloading config." in b.log()
        assert rogue.publish(mine, b"after") == NOT_AUTHORIZED
        assert rogue.publish(topic(FLEET, ME, "status"), b"after") == NOT_AUTHORIZED
        assert honest.publish(marker, b"marker") == 0
        assert collector.received(until_topic=marker) == [(marker, b"marker")]
