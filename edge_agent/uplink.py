"""The MQTT uplink: the aiomqtt adapter and the delivery loop built on it.

Everything aiomqtt or paho raises is turned into :class:`UplinkError` at this boundary;
the rest of the agent only sees "connected", "published" (PUBACK), "acknowledged" (end to
end) or ``UplinkError``. Delivery rules (docs/uplink.md):

- a PUBACK marks a batch *published*; only an end-to-end ack deletes it from the outbox;
- a published batch without an end-to-end ack is sent again after ``resend_after_ms``;
- at most ``max_inflight`` publishes await their PUBACK at once, fewer on a slow link:
  only what the link delivers within a share of the publish timeout, at the rate measured
  from PUBACKs (``backoff.LinkRate``), and each PUBACK timeout grows with the bytes queued
  ahead of it; every round re-queries the outbox, so an urgent event written meanwhile
  overtakes the backlog;
- a token bucket paces the bytes sent, so a backlog after an outage does not fill the LTE link;
- reconnects wait a capped, fully jittered exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr

from daemon_kit.backoff import Backoff
from edge_agent.backoff import LinkRate, TokenBucket
from edge_agent.clock import wall_ms
from edge_agent.config import AgentConfig, MqttConfig
from edge_agent.errors import AgentError, ConfigError
from protocol import (
    QOS,
    Ack,
    Presence,
    ProtocolError,
    Status,
    ack_topic,
    decode_ack,
    encode_status,
    status_topic,
    topic,
)

log = logging.getLogger(__name__)

# An idle publisher waits for a wake-up (a batch closed) or the next resend it knows of
# (a batch it published); at the latest after this long it looks at the outbox again, for
# batches published before a restart, whose resend times it does not know.
IDLE_POLL_S = 5.0
# How long ``MqttLink.abort`` waits for the client to notice its dropped connection.
ABORT_WAIT_S = 2.0
# Publish times kept for the end-to-end ack round trip; the oldest go first beyond this.
MAX_TRACKED_PUBLISHES = 4096


class UplinkError(AgentError):
    """The broker cannot be reached, refused us, or the connection broke."""


# -- TLS -----------------------------------------------------------------------------------


def _tls_file(value: str | None, key: str, base: Path) -> str | None:
    if value is None:
        return None
    path = Path(value) if Path(value).is_absolute() else base / value
    if not path.is_file():
        raise ConfigError(f"key 'mqtt.{key}': file not found: {path}")
    try:
        path.open("rb").close()
    except OSError as exc:
        raise ConfigError(f"key 'mqtt.{key}': cannot read {path}: {exc.strerror}") from None
    return str(path)


def tls_context(mqtt: MqttConfig, base: Path) -> ssl.SSLContext | None:
    """A client TLS context verifying the server, with a client certificate if configured.

    Built before anything connects, so a wrong path fails the start with the key's name.
    """
    ca = _tls_file(mqtt.tls_ca, "tls_ca", base)
    cert = _tls_file(mqtt.tls_cert, "tls_cert", base)
    key = _tls_file(mqtt.tls_key, "tls_key", base)
    if ca is None and cert is None and key is None:
        return None
    if (cert is None) != (key is None):
        raise ConfigError("key 'mqtt.tls_cert'/'mqtt.tls_key': give both or neither")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    except ssl.SSLError as exc:
        raise ConfigError(f"key 'mqtt.tls_ca': not a CA certificate file: {exc}") from None
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"key 'mqtt.tls_cert'/'mqtt.tls_key': certificate and key do not load: {exc}"
            ) from None
    return context


# -- settings ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UplinkSettings:
    fleet_id: str
    vehicle_id: str
    host: str
    port: int
    keepalive_s: int = 120
    session_expiry_s: int = 86_400
    connect_timeout_s: float = 15.0
    publish_timeout_s: float = 20.0
    max_inflight: int = 16
    inflight_budget_share: float = 0.25
    resend_after_ms: int = 60_000
    catchup_rate_bytes_per_s: int = 32_768
    catchup_burst_bytes: int = 65_536
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 120.0
    username: str | None = None
    password: SecretStr | None = None
    tls: ssl.SSLContext | None = None

    @property
    def client_id(self) -> str:
        return f"agent-{self.fleet_id}-{self.vehicle_id}"

    @classmethod
    def from_config(cls, config: AgentConfig, base: Path) -> UplinkSettings:
        m = config.mqtt
        return cls(
            fleet_id=config.vehicle.fleet,
            vehicle_id=config.vehicle.id,
            host=m.host,
            port=m.port,
            keepalive_s=m.keepalive_s,
            session_expiry_s=m.session_expiry_s,
            connect_timeout_s=m.connect_timeout_s,
            publish_timeout_s=m.publish_timeout_s,
            max_inflight=m.max_inflight,
            inflight_budget_share=m.inflight_budget_share,
            resend_after_ms=m.resend_after_ms,
            catchup_rate_bytes_per_s=m.catchup_rate_bytes_per_s,
            catchup_burst_bytes=m.catchup_burst_bytes,
            reconnect_min_s=m.reconnect_min_s,
            reconnect_max_s=max(m.reconnect_max_s, m.reconnect_min_s),
            username=m.username,
            password=m.password,
            tls=tls_context(m, base),
        )


# -- the adapter ---------------------------------------------------------------------------


class Link(Protocol):
    """A connected session: what the delivery loop needs from MQTT."""

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, timeout_s: float | None = None
    ) -> None: ...

    def acks(self) -> AsyncIterator[Ack]: ...


class MqttLink:
    """One connected aiomqtt client; every aiomqtt/paho error leaves as UplinkError."""

    def __init__(self, client: aiomqtt.Client, settings: UplinkSettings) -> None:
        self._client = client
        self._settings = settings
        self.bad_acks = 0

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, timeout_s: float | None = None
    ) -> None:
        """Publish with QoS 1 and return once the broker's PUBACK arrived.

        ``timeout_s`` (default ``publish_timeout_s``) bounds the wait for the PUBACK.
        """
        timeout = self._settings.publish_timeout_s if timeout_s is None else timeout_s
        try:
            await self._client.publish(topic, payload, qos=QOS, retain=retain, timeout=timeout)
        except aiomqtt.MqttError as exc:
            raise UplinkError(f"publish to {topic} failed: {exc}") from None

    async def abort(self) -> None:
        """Drop the TCP connection without an MQTT DISCONNECT, as a power loss or a cut
        cable does: the broker sees the connection end and publishes the will. Returns once
        the client noticed (bounded), so leaving ``connect`` sends nothing more."""
        sock = self._client._client.socket()
        if not isinstance(sock, socket.socket):  # also ssl.SSLSocket
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # nothing can be sent after this, DISCONNECT neither
        with contextlib.suppress(TimeoutError, aiomqtt.MqttError):
            await asyncio.wait_for(asyncio.shield(self._client._disconnected), ABORT_WAIT_S)

    async def acks(self) -> AsyncIterator[Ack]:
        """End-to-end acks for this vehicle, until the connection breaks (UplinkError).

        aiomqtt acknowledges on arrival; that is fine here because an ack is cumulative and
        idempotent: one lost to a crash is replaced by the collector's answer to the resend.
        """
        try:
            async for message in self._client.messages:
                payload = message.payload
                if not isinstance(payload, bytes | bytearray):
                    self.bad_acks += 1
                    continue
                try:
                    ack = decode_ack(payload)
                except ProtocolError as exc:
                    self.bad_acks += 1
                    if self.bad_acks in (1, 10, 100) or self.bad_acks % 1000 == 0:
                        log.warning("ignoring a bad ack (%s; %d so far)", exc, self.bad_acks)
                    continue
                if ack.vehicle_id != self._settings.vehicle_id:
                    self.bad_acks += 1
                    continue
                yield ack
        except aiomqtt.MqttError as exc:
            raise UplinkError(f"connection lost: {exc}") from None
        raise UplinkError("connection closed")


def _status(state: Presence, now_ms: Callable[[], int]) -> bytes:
    return encode_status(Status(state=state, time_ms=now_ms()))


@contextlib.asynccontextmanager
async def connect(
    settings: UplinkSettings, now_ms: Callable[[], int] = wall_ms
) -> AsyncIterator[MqttLink]:
    """Connect (persistent MQTT 5 session), subscribe to our ack topic, announce ``online``.

    The subscription is renewed on every connect: a broker that lost its state (no
    persistence, or mosquitto 2.0.11's restart bug) would otherwise never send acks again.
    Leaving the block normally publishes a retained ``offline``; a broken connection leaves
    it to the broker, which publishes the will.
    """
    status = status_topic(settings.fleet_id, settings.vehicle_id)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = settings.session_expiry_s
    try:
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            identifier=settings.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            keepalive=settings.keepalive_s,
            timeout=settings.connect_timeout_s,
            will=aiomqtt.Will(status, _status(Presence.OFFLINE, now_ms), qos=QOS, retain=True),
            username=settings.username,
            password=None if settings.password is None else settings.password.get_secret_value(),
            tls_context=settings.tls,
            max_inflight_messages=settings.max_inflight,
            max_queued_incoming_messages=1000,
        )
        # aiomqtt warns above 10 outstanding calls; our window is bounded on purpose.
        client.pending_calls_threshold = settings.max_inflight + 8
        await client.__aenter__()
    except aiomqtt.MqttError as exc:
        raise UplinkError(f"cannot connect to {settings.host}:{settings.port}: {exc}") from None
    clean = False
    try:
        link = MqttLink(client, settings)
        try:
            await client.subscribe(
                ack_topic(settings.fleet_id, settings.vehicle_id),
                qos=QOS,
                timeout=settings.publish_timeout_s,
            )
        except aiomqtt.MqttError as exc:
            raise UplinkError(f"subscribe failed: {exc}") from None
        await link.publish(status, _status(Presence.ONLINE, now_ms), retain=True)
        yield link
        clean = True
    finally:
        with contextlib.suppress(aiomqtt.MqttError, UplinkError):
            if clean:
                await link.publish(status, _status(Presence.OFFLINE, now_ms), retain=True)
        # Already gone if this fails; the broker then publishes the will.
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)


# -- delivery ------------------------------------------------------------------------------


class BatchLike(Protocol):
    @property
    def epoch(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def channel(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


class OutboxLike(Protocol):
    """The part of the outbox the uplink uses (edge_agent.outbox.Outbox)."""

    async def due_for_publish(self, *, limit: int, resend_after_ms: int) -> Sequence[BatchLike]: ...
    async def mark_published(self, batches: Sequence[tuple[int, int]]) -> None: ...
    async def acknowledge(self, epoch: int, upto_seq: int) -> int: ...
    async def unpublished_bytes(self) -> int: ...


Connector = Callable[[UplinkSettings], contextlib.AbstractAsyncContextManager[Link]]


@dataclass
class UplinkCounters:
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    published: int = 0
    published_bytes: int = 0
    resent: int = 0
    acks: int = 0
    acked_batches: int = 0
    # Last publish -> PUBACK time, and last publish -> end-to-end ack time (of the highest
    # seq the ack covered, from its latest publish); None until measured.
    last_puback_rtt_ms: int | None = None
    last_ack_rtt_ms: int | None = None
    # Bytes per second the link delivered lately (from PUBACKs); None until measured.
    link_rate_bytes_per_s: int | None = None
    # Publishes whose PUBACK did not come within their timeout (each ends the session).
    publish_timeouts: int = 0


class _SessionEnd(Exception):  # noqa: N818 - a signal between tasks, not an error
    """Raised inside a session's task group to end it on request."""


@dataclass
class Uplink:
    """Keeps a connection up and moves batches from the outbox to the broker and acks back.

    ``run`` returns only when ``stop`` is set; connection trouble is logged and retried.
    """

    settings: UplinkSettings
    outbox: OutboxLike
    connector: Connector = connect
    random01: Callable[[], float] = random.random
    monotonic: Callable[[], float] = time.monotonic
    now_ms: Callable[[], int] = wall_ms
    counters: UplinkCounters = field(default_factory=UplinkCounters)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    # Set while the last outbox query found nothing due (used for a bounded last publish).
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    # Set by every end-to-end ack; whoever waits for acks clears it first.
    acked: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._wake = asyncio.Event()
        self._sent_at: dict[tuple[int, int], float] = {}  # (epoch, seq) -> monotonic
        # (epoch, seq) -> monotonic time after its PUBACK was recorded, oldest first: its
        # resend is due ``resend_after_ms`` later, unless an end-to-end ack comes first.
        self._marked_at: dict[tuple[int, int], float] = {}
        self._backoff = Backoff(
            self.settings.reconnect_min_s, self.settings.reconnect_max_s, self.random01
        )
        self._bucket = TokenBucket(
            float(self.settings.catchup_rate_bytes_per_s),
            float(self.settings.catchup_burst_bytes),
            self.monotonic(),
        )
        # Kept across reconnects: the link is usually the same one after a drop.
        self._rate = LinkRate(
            self.settings.publish_timeout_s,
            self.settings.max_inflight,
            self.settings.inflight_budget_share,
        )

    def wake(self) -> None:
        """New batches are due (e.g. an urgent event): look at the outbox now."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with self.connector(self.settings) as link:
                    self.counters.connects += 1
                    self._backoff.reset()
                    self.connected.set()
                    log.info("uplink connected to %s:%d", self.settings.host, self.settings.port)
                    try:
                        await self._session(link, stop)
                    finally:
                        self.connected.clear()
                        self.idle.clear()
            except UplinkError as exc:
                self.counters.connect_failures += 1
                log.warning("uplink: %s", exc)
            if stop.is_set():
                return
            delay = self._backoff.next_delay_s()
            log.info("uplink reconnecting in %.1f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _session(self, link: Link, stop: asyncio.Event) -> None:
        async def until_stop() -> None:
            await stop.wait()
            raise _SessionEnd

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._publish_loop(link))
                tg.create_task(self._ack_loop(link))
                tg.create_task(until_stop())
        except* _SessionEnd:
            pass  # stop was set: leave the session quietly
        except* UplinkError as group:
            self.counters.disconnects += 1
            raise group.exceptions[0] from None

    async def _ack_loop(self, link: Link) -> None:
        async for ack in link.acks():
            self.counters.acks += 1
            self.counters.acked_batches += await self.outbox.acknowledge(ack.epoch, ack.seq)
            self._ack_rtt(ack.epoch, ack.seq)
            self._forget_marked(ack.epoch, ack.seq)
            self.acked.set()

    def _ack_rtt(self, epoch: int, upto_seq: int) -> None:
        covered = [key for key in self._sent_at if key[0] == epoch and key[1] <= upto_seq]
        if not covered:
            return
        sent = self._sent_at[max(covered)]
        self.counters.last_ack_rtt_ms = round((self.monotonic() - sent) * 1000)
        for key in covered:
            del self._sent_at[key]

    def _forget_marked(self, epoch: int, upto_seq: int) -> None:
        for key in [k for k in self._marked_at if k[0] == epoch and k[1] <= upto_seq]:
            del self._marked_at[key]

    def _idle_wait_s(self, resend_after_ms: int) -> float:
        """How long an idle publisher may wait for a wake-up: until the oldest resend it
        knows of is due. Called after the outbox had nothing due, so an entry already due
        by then is a batch that is gone (acknowledged, evicted): it is forgotten."""
        now = self.monotonic()
        after_s = resend_after_ms / 1000
        while self._marked_at:
            key, at = next(iter(self._marked_at.items()))
            if at + after_s > now:
                return min(IDLE_POLL_S, at + after_s - now)
            del self._marked_at[key]
        return IDLE_POLL_S

    async def _publish_loop(self, link: Link) -> None:
        s = self.settings
        while True:
            self._wake.clear()
            ahead = await self.outbox.unpublished_bytes()
            resend_after_ms = self._rate.resend_after_ms(s.resend_after_ms, ahead)
            due = await self.outbox.due_for_publish(
                limit=s.max_inflight, resend_after_ms=resend_after_ms
            )
            if not due:
                self.idle.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_wait_s(resend_after_ms))
                continue
            self.idle.clear()
            # The rest stays due and comes back (urgent first) in the next round.
            due = due[: self._rate.window([len(b.payload) for b in due])]
            await self._publish_round(link, due)

    def _update_rate(self) -> None:
        rate = self._rate.rate()
        self.counters.link_rate_bytes_per_s = None if rate is None else round(rate)

    async def _publish_round(self, link: Link, due: Sequence[BatchLike]) -> None:
        """Publish ``due`` with up to ``len(due)`` PUBACKs outstanding; mark what got one."""
        s = self.settings
        done: list[tuple[int, int]] = []  # (epoch, seq)

        async def one(batch: BatchLike, bytes_ahead: int) -> None:
            started = self.monotonic()
            timeout_s = self._rate.timeout_s(bytes_ahead)
            try:
                await link.publish(
                    topic(s.fleet_id, s.vehicle_id, batch.channel),
                    batch.payload,
                    timeout_s=timeout_s,
                )
            except UplinkError:
                waited = self.monotonic() - started
                if waited >= timeout_s * 0.99:  # timed out, rather than a broken socket
                    self.counters.publish_timeouts += 1
                    self._rate.on_timeout(bytes_ahead, waited)
                    self._update_rate()
                raise
            now = self.monotonic()
            self._rate.on_puback(len(batch.payload), started, now)
            self._update_rate()
            self.counters.last_puback_rtt_ms = round((now - started) * 1000)
            key = (batch.epoch, batch.seq)
            self._sent_at.pop(key, None)
            self._sent_at[key] = started  # re-inserted: dict order stays oldest first
            while len(self._sent_at) > MAX_TRACKED_PUBLISHES:
                del self._sent_at[next(iter(self._sent_at))]
            done.append((batch.epoch, batch.seq))
            self.counters.published += 1
            self.counters.published_bytes += len(batch.payload)

        ahead = 0  # bytes of this round published before, and including, the batch
        try:
            async with asyncio.TaskGroup() as tg:
                for batch in due:
                    wait = self._bucket.reserve(len(batch.payload), self.monotonic())
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if getattr(batch, "publish_count", 0):
                        self.counters.resent += 1
                    ahead += len(batch.payload)
                    tg.create_task(one(batch, ahead))
        except* UplinkError as group:
            raise group.exceptions[0] from None  # one broken connection, not a group
        finally:
            # Also after a failure: what got its PUBACK waits for the resend timer, not less.
            if done:
                await asyncio.shield(self.outbox.mark_published(sorted(done)))
                self._note_marked(done)

    def _note_marked(self, done: Sequence[tuple[int, int]]) -> None:
        at = self.monotonic()
        for key in done:
            self._marked_at.pop(key, None)
            self._marked_at[key] = at  # re-inserted: dict order stays oldest first
        while len(self._marked_at) > MAX_TRACKED_PUBLISHES:
            del self._marked_at[next(iter(self._marked_at))]
