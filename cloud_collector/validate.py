"""Classify one received MQTT message: a batch to store, a presence update, or a rejection.

Pure: bytes and a topic in, a value out; no I/O and no clock. The order of checks follows
PROTOCOL.md section 9 so hostile input costs as little as possible: the topic, the
compressed size (before anything is parsed), the stable identity, the identity against the
topic, the schema version, and only then bounded decompression and the full field checks
(both inside ``protocol.decode_batch``).

Who may publish on a topic is the broker's business: its ACL pins each taxi's certificate
or username to ``fleet/<fleet>/<vehicle>/#``. Mosquitto does not show subscribers who
published a message (neither username nor MQTT 5 user properties set by the broker), so
the collector cannot check the publisher itself; it checks that the payload's fleet and
vehicle equal the topic's, so a taxi can only ever write (and be acknowledged) as itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from protocol import (
    MAX_CONTROL_PAYLOAD_BYTES,
    MAX_PAYLOAD_BYTES,
    SUPPORTED_VERSIONS,
    Batch,
    BatchIdentity,
    Channel,
    ProtocolError,
    Status,
    decode_batch,
    decode_status,
    parse_topic,
    peek_identity,
)
from protocol.errors import BAD_FIELD_PREFIX
from protocol.limits import MAX_ID_LEN
from protocol.wire import unpack_control

# Reasons of our own, next to the protocol's (PROTOCOL.md section 8).
WRONG_FLEET: Final = "wrong_fleet"
WRONG_VEHICLE: Final = "wrong_vehicle"
UNEXPECTED_CHANNEL: Final = "unexpected_channel"
TOO_LARGE_COMPRESSED: Final = "too_large_compressed"
UNKNOWN_VERSION: Final = "unknown_version"
# A header or status time below 0: the sender's clock is set before 1970.
TIME_BEFORE_1970: Final = "time_before_1970"
# Every reason above that the protocol package does not define (PROTOCOL.md section 8
# lists them; a test checks the list against this tuple).
REASONS: Final = (WRONG_FLEET, WRONG_VEHICLE, UNEXPECTED_CHANNEL, TIME_BEFORE_1970)

# Wire keys of the times whose negative value means a clock before 1970.
_TIME_KEYS: Final = frozenset({"t", "t0", "t1", "sent"})


@dataclass(frozen=True, slots=True)
class Accepted:
    """A fully decoded, checked batch whose identity matches its topic."""

    channel: Channel
    batch: Batch


@dataclass(frozen=True, slots=True)
class Rejected:
    """A payload to quarantine under ``reason``.

    ``identity`` is set only when the batch may be acknowledged end to end: its stable
    fields were readable and name the topic's own fleet and vehicle (PROTOCOL.md 3.2 and
    9). A payload claiming another vehicle is never given an identity: a receipt under a
    foreign identity would let one taxi mark another taxi's batches as already stored.
    ``fleet``/``vehicle`` come from the topic, ``None`` when even the topic is invalid.
    """

    reason: str
    fleet: str | None
    vehicle: str | None
    identity: BatchIdentity | None = None


@dataclass(frozen=True, slots=True)
class PresenceUpdate:
    """A status message; ``status`` is None for an empty retained payload (cleared)."""

    fleet: str
    vehicle: str
    status: Status | None


Outcome = Accepted | Rejected | PresenceUpdate


def sender_of(topic: str) -> str:
    """Who published on ``topic``, as far as the collector can tell: its vehicle segment
    (the broker's ACL pins each certificate to its own vehicle id), cut to an id's length
    so that invalid topics cannot make unbounded keys; "" when there is none."""
    parts = topic.split("/", 3)
    return parts[2][:MAX_ID_LEN] if len(parts) >= 3 else ""


def stamped_ms(batch: Batch) -> int:
    """The latest time the sender put in a batch (agent clock): its send time, or a
    record time if later (``last_ms`` bounds every record time)."""
    return max(batch.header.sent_ms, batch.header.last_ms)


def _time_reason(exc: ProtocolError, payload: bytes, max_bytes: int) -> str:
    """``exc``'s reason, or ``TIME_BEFORE_1970`` when the field it names is a time whose
    raw value is negative (a clearer outcome for an operator than the field name)."""
    field = exc.reason.removeprefix(BAD_FIELD_PREFIX)
    if field == exc.reason or field not in _TIME_KEYS:
        return exc.reason
    try:
        raw = unpack_control(payload, max_bytes).get(field)
    except ProtocolError:
        return exc.reason
    negative = isinstance(raw, int) and not isinstance(raw, bool) and raw < 0
    return TIME_BEFORE_1970 if negative else exc.reason


def classify(topic: str, payload: bytes, *, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> Outcome:
    """What to do with ``payload`` received on ``topic``. Never raises for bad input."""
    try:
        parts = parse_topic(topic)
    except ProtocolError as exc:
        return Rejected(exc.reason, None, None)
    fleet, vehicle, channel = parts
    if channel is Channel.STATUS:
        return _status(fleet, vehicle, payload)
    if channel is Channel.ACK:
        # Our own subscriptions never match acks; anything else here is a broker surprise.
        return Rejected(UNEXPECTED_CHANNEL, fleet, vehicle)
    return _batch(fleet, vehicle, channel, payload, max_payload_bytes)


def _batch(
    fleet: str, vehicle: str, channel: Channel, payload: bytes, max_payload_bytes: int
) -> Outcome:
    """A batch on ``channel``: its size, then its identity against the topic, then all of it."""
    # Checked here too (decode_batch checks it first as well) so that the limit is plainly
    # before any parsing, whatever the protocol package does.
    if len(payload) > max_payload_bytes:
        return Rejected(TOO_LARGE_COMPRESSED, fleet, vehicle)
    try:
        identity = peek_identity(payload)
    except ProtocolError as exc:
        return Rejected(_time_reason(exc, payload, MAX_CONTROL_PAYLOAD_BYTES), fleet, vehicle)
    mismatch = _identity_mismatch(identity, fleet, vehicle)
    if mismatch is not None:
        return mismatch
    try:
        batch = decode_batch(payload)
    except ProtocolError as exc:
        reason = _time_reason(exc, payload, max_payload_bytes)
        return Rejected(reason, fleet, vehicle, identity)
    return Accepted(channel, batch)


def _identity_mismatch(identity: BatchIdentity, fleet: str, vehicle: str) -> Rejected | None:
    """The envelope must name the topic's fleet and vehicle, in a version we read."""
    if identity.fleet_id != fleet:
        return Rejected(WRONG_FLEET, fleet, vehicle)
    if identity.vehicle_id != vehicle:
        return Rejected(WRONG_VEHICLE, fleet, vehicle)
    if identity.schema_version not in SUPPORTED_VERSIONS:
        return Rejected(UNKNOWN_VERSION, fleet, vehicle, identity)
    return None


def _status(fleet: str, vehicle: str, payload: bytes) -> Outcome:
    if not payload:
        return PresenceUpdate(fleet, vehicle, None)
    try:
        return PresenceUpdate(fleet, vehicle, decode_status(payload))
    except ProtocolError as exc:
        return Rejected(_time_reason(exc, payload, MAX_CONTROL_PAYLOAD_BYTES), fleet, vehicle)
