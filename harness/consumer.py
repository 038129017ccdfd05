"""A small collector for tests: commit first, then acknowledge (MQTT and end to end).

    python -m harness.consumer --port P --db FILE [--ready FILE]

Subscribes (QoS 1, persistent MQTT 5 session, stable client id) to
``fleet/+/+/{batch,event,health}``, decodes each batch with ``protocol.decode_batch`` and
commits it to SQLite keyed by ``(vehicle, epoch, seq)``; a duplicate costs one primary-key
probe and adds nothing. Only after the commit does it send the MQTT PUBACK (paho's manual
ack, reached through aiomqtt's underlying client: aiomqtt itself acknowledges on arrival,
which loses messages when the consumer dies) and then the end-to-end ack, the highest seq
such that 1..seq of that vehicle and epoch are stored, on ``fleet/<f>/<v>/ack``.

Kill it at any moment: whatever was committed stays, whatever was not is redelivered by
the broker (persistent session) or re-sent by the agent (resend timer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol import (
    Ack,
    Channel,
    ProtocolError,
    channel_filter,
    decode_batch,
    encode_ack,
    parse_topic,
    peek_identity,
)
from protocol.topics import ack_topic

SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    vehicle TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
    channel TEXT NOT NULL, quarantined INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (vehicle, epoch, seq)
);
CREATE TABLE IF NOT EXISTS events (
    vehicle TEXT, epoch TEXT, seq INTEGER, type TEXT, time_ms INTEGER
);
CREATE TABLE IF NOT EXISTS samples (
    vehicle TEXT, epoch TEXT, seq INTEGER, name TEXT, time_ms INTEGER, value REAL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Store:
    """The consumer's database. Every ``commit_batch`` is one transaction."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def _bump(self, name: str) -> None:
        self.db.execute(
            "INSERT INTO counters VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1",
            (name,),
        )

    def commit_batch(self, channel: str, payload: bytes) -> tuple[str, int, int] | None:
        """Store one batch; its (vehicle, epoch, seq), or None if not even that is readable."""
        try:
            identity = peek_identity(payload)
        except ProtocolError:
            with self.db:
                self._bump("unreadable")
            return None
        key = (identity.vehicle_id, identity.epoch, identity.seq)
        # A uint64 epoch does not fit SQLite's signed INTEGER: stored as decimal text.
        row_key = (identity.vehicle_id, str(identity.epoch), identity.seq)
        try:
            batch = decode_batch(payload)
        except ProtocolError:
            batch = None
        self.db.execute("BEGIN IMMEDIATE")
        try:
            fresh = self.db.execute(
                "INSERT OR IGNORE INTO receipts VALUES (?, ?, ?, ?, ?)",
                (*row_key, channel, int(batch is None)),
            ).rowcount
            if not fresh:
                self._bump("duplicates")
            elif batch is not None:
                self.db.executemany(
                    "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                    [(*row_key, e.type, e.time_ms) for e in batch.events],
                )
                self.db.executemany(
                    "INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (*row_key, s.name, t, v)
                        for s in batch.signals
                        for t, v in zip(s.times_ms, s.values, strict=True)
                    ],
                )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return key

    def contiguous(self, vehicle: str, epoch: int) -> int:
        """Highest seq such that 1..seq are all stored (an outbox numbers from 1); 0 if
        seq 1 is missing."""
        high = 0
        for (seq,) in self.db.execute(
            "SELECT seq FROM receipts WHERE vehicle = ? AND epoch = ? AND seq >= 1 ORDER BY seq",
            (vehicle, str(epoch)),
        ):
            if seq != high + 1:
                break
            high = seq
        return high


@dataclass
class Results:
    """What a consumer database holds, for assertions."""

    receipts: set[tuple[str, int, int]] = field(default_factory=set)
    events: Counter[tuple[str, int]] = field(default_factory=Counter)
    samples: Counter[tuple[str, int]] = field(default_factory=Counter)
    values: dict[tuple[str, int], float | None] = field(default_factory=dict)
    duplicates: int = 0


def load_results(path: Path) -> Results:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = Results()
        out.receipts = {
            (str(v), int(e), int(s))
            for v, e, s in db.execute("SELECT vehicle, epoch, seq FROM receipts")
        }
        out.events = Counter(db.execute("SELECT type, time_ms FROM events"))
        for name, t, v in db.execute("SELECT name, time_ms, value FROM samples"):
            out.samples[(name, t)] += 1
            out.values[(name, t)] = v
        row = db.execute("SELECT value FROM counters WHERE name = 'duplicates'").fetchone()
        out.duplicates = 0 if row is None else int(row[0])
        return out
    finally:
        db.close()


async def serve(host: str, port: int, store: Store, client_id: str, ready: Path | None) -> None:
    """Consume until cancelled, reconnecting (quickly: tests restart the broker) when needed."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 86_400
    while True:
        client = aiomqtt.Client(
            host,
            port,
            identifier=client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            keepalive=10,
            timeout=5,
        )
        # The PUBACK must wait for our commit: switch paho to manual acks (aiomqtt #345).
        client._client.manual_ack_set(True)
        try:
            async with client:
                # Subscribed on every connect: mosquitto 2.0.11 can forget durable
                # subscriptions on restart.
                for ch in (Channel.BATCH, Channel.EVENT, Channel.HEALTH):
                    await client.subscribe(channel_filter(ch), qos=1)
                if ready is not None:
                    await asyncio.to_thread(ready.touch)
                async for message in client.messages:
                    await _handle(client, store, message)
        except aiomqtt.MqttError:
            await asyncio.sleep(0.2)


async def _handle(client: aiomqtt.Client, store: Store, message: aiomqtt.Message) -> None:
    payload = message.payload
    data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
    try:
        parts = parse_topic(message.topic.value)
    except ProtocolError:
        client._client.ack(message.mid, message.qos)
        return
    key = store.commit_batch(parts.channel, data)
    client._client.ack(message.mid, message.qos)  # after the commit, never before
    if key is None:
        return
    vehicle, epoch, _ = key
    high = store.contiguous(vehicle, epoch)
    if high >= 1:
        ack = Ack(vehicle_id=vehicle, epoch=epoch, seq=high, time_ms=time.time_ns() // 10**6)
        await client.publish(ack_topic(parts.fleet_id, vehicle), encode_ack(ack), qos=1)


def spawn(port: int, db: Path, *, timeout_s: float = 15.0) -> subprocess.Popen[bytes]:
    """Start ``python -m harness.consumer`` and return once it is subscribed."""
    ready = db.with_name(db.name + ".ready")
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.consumer",
            "--port",
            str(port),
            "--db",
            str(db),
            "--ready",
            str(ready),
        ],
        cwd=Path(__file__).resolve().parent.parent,
    )
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(5)
            raise RuntimeError("the test consumer did not subscribe in time")
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL: the consumer has no state that a kill could lose."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--client-id", default="collector-test")
    parser.add_argument("--ready", type=Path, help="touched once subscribed")
    args = parser.parse_args()
    store = Store(args.db)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, store, args.client_id, args.ready))


if __name__ == "__main__":
    main()
