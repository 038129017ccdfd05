"""MQTT topic layout: ``fleet/<fleet>/<vehicle>/<channel>``.

Every message is published with QoS 1; only ``status`` is retained. A collector shares the
data channels among its instances with MQTT 5 shared subscriptions, but subscribes to
``status`` without sharing: brokers do not deliver retained messages to shared
subscriptions, and every instance may want the current presence of every vehicle.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, NamedTuple

from protocol.checks import show
from protocol.errors import BAD_CHANNEL, BAD_ID_PREFIX, BAD_TOPIC, InvalidTopic
from protocol.ids import is_valid_id
from protocol.limits import MAX_ID_LEN

TOPIC_ROOT: Final = "fleet"
SHARE_PREFIX: Final = "$share"
QOS: Final = 1
# Longest valid topic; longer strings are rejected before they are split.
MAX_TOPIC_LEN: Final = len(TOPIC_ROOT) + 2 * MAX_ID_LEN + len("health") + 3


class Channel(StrEnum):
    BATCH = "batch"  # vehicle -> cloud: bulk batches
    EVENT = "event"  # vehicle -> cloud: urgent event batches, sent ahead of bulk
    HEALTH = "health"  # vehicle -> cloud: batches of health snapshots
    STATUS = "status"  # vehicle -> cloud: retained presence, also the MQTT will
    ACK = "ack"  # cloud -> vehicle: end-to-end acknowledgements


# Channels carrying the batch envelope, which a collector load-balances over its instances.
BATCH_CHANNELS: Final = (Channel.BATCH, Channel.EVENT, Channel.HEALTH)


class TopicParts(NamedTuple):
    fleet_id: str
    vehicle_id: str
    channel: Channel


def is_retained(channel: Channel | str) -> bool:
    """Whether messages on ``channel`` are published with the retain flag."""
    return _channel(channel) is Channel.STATUS


def _id(value: object, what: str) -> str:
    if not is_valid_id(value):
        raise InvalidTopic(BAD_ID_PREFIX + what, f"{show(value)} is not a valid {what} id")
    assert isinstance(value, str)
    return value


def _channel(value: object) -> Channel:
    try:
        return Channel(value)  # type: ignore[arg-type]  # a non-str raises ValueError too
    except ValueError:
        raise InvalidTopic(BAD_CHANNEL, f"{show(value)} is not a channel") from None


def topic(fleet_id: str, vehicle_id: str, channel: Channel | str) -> str:
    """The topic of ``channel`` for one vehicle. Raises InvalidTopic for a bad id."""
    return "/".join(
        (TOPIC_ROOT, _id(fleet_id, "fleet"), _id(vehicle_id, "vehicle"), _channel(channel))
    )


def batch_topic(fleet_id: str, vehicle_id: str) -> str:
    return topic(fleet_id, vehicle_id, Channel.BATCH)


def event_topic(fleet_id: str, vehicle_id: str) -> str:
    return topic(fleet_id, vehicle_id, Channel.EVENT)


def health_topic(fleet_id: str, vehicle_id: str) -> str:
    return topic(fleet_id, vehicle_id, Channel.HEALTH)


def status_topic(fleet_id: str, vehicle_id: str) -> str:
    return topic(fleet_id, vehicle_id, Channel.STATUS)


def ack_topic(fleet_id: str, vehicle_id: str) -> str:
    return topic(fleet_id, vehicle_id, Channel.ACK)


def parse_topic(value: str) -> TopicParts:
    """Split a concrete topic into fleet id, vehicle id and channel; raises InvalidTopic."""
    if type(value) is not str or len(value) > MAX_TOPIC_LEN:
        raise InvalidTopic(BAD_TOPIC, f"{show(value)} is not a topic of this protocol")
    parts = value.split("/")
    if len(parts) != 4 or parts[0] != TOPIC_ROOT:
        raise InvalidTopic(
            BAD_TOPIC, f"{show(value)} is not {TOPIC_ROOT}/<fleet>/<vehicle>/<channel>"
        )
    return TopicParts(_id(parts[1], "fleet"), _id(parts[2], "vehicle"), _channel(parts[3]))


def channel_filter(channel: Channel | str, *, fleet_id: str | None = None) -> str:
    """``fleet/+/+/<channel>``, or ``fleet/<fleet>/+/<channel>`` for one fleet."""
    fleet = "+" if fleet_id is None else _id(fleet_id, "fleet")
    return f"{TOPIC_ROOT}/{fleet}/+/{_channel(channel)}"


def shared_filter(group: str, channel: Channel | str, *, fleet_id: str | None = None) -> str:
    """``$share/<group>/fleet/+/+/<channel>``: each message goes to one member of ``group``.

    ``group`` follows the id rules, which keep ``/``, ``+`` and ``#`` out of it.
    """
    return f"{SHARE_PREFIX}/{_id(group, 'group')}/{channel_filter(channel, fleet_id=fleet_id)}"


def collector_filters(group: str, *, fleet_id: str | None = None) -> tuple[str, ...]:
    """Everything a collector instance subscribes to (all with QoS 1): the batch channels
    shared within ``group``, and ``status`` unshared so retained presence arrives."""
    shared = tuple(shared_filter(group, ch, fleet_id=fleet_id) for ch in BATCH_CHANNELS)
    return (*shared, channel_filter(Channel.STATUS, fleet_id=fleet_id))
