"""Topic layout: builders, parser, id rules and the collector's subscriptions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    QOS,
    Channel,
    InvalidTopic,
    TopicParts,
    ack_topic,
    batch_topic,
    channel_filter,
    collector_filters,
    event_topic,
    health_topic,
    is_retained,
    is_valid_id,
    parse_topic,
    shared_filter,
    status_topic,
    topic,
)
from tests.protocol.strategies import ids
from tests.support.examples import examples


def test_builders() -> None:
    assert batch_topic("berlin", "taxi-7") == "fleet/berlin/taxi-7/batch"
    assert event_topic("berlin", "taxi-7") == "fleet/berlin/taxi-7/event"
    assert health_topic("berlin", "taxi-7") == "fleet/berlin/taxi-7/health"
    assert status_topic("berlin", "taxi-7") == "fleet/berlin/taxi-7/status"
    assert ack_topic("berlin", "taxi-7") == "fleet/berlin/taxi-7/ack"
    assert topic("b", "t", "ack") == "fleet/b/t/ack"


def test_parse() -> None:
    parts = parse_topic("fleet/berlin/taxi-7/batch")
    assert parts == TopicParts("berlin", "taxi-7", Channel.BATCH)
    fleet, vehicle, channel = parts
    assert (fleet, vehicle, channel) == ("berlin", "taxi-7", "batch")
    assert parts.channel is Channel.BATCH


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "bad_topic"),
        ("fleet/a/b", "bad_topic"),
        ("fleet/a/b/batch/x", "bad_topic"),
        ("fleet/a/b/batch/", "bad_topic"),
        ("/fleet/a/b/batch", "bad_topic"),
        ("cars/a/b/batch", "bad_topic"),
        ("Fleet/a/b/batch", "bad_topic"),
        ("fleet/+/b/batch", "bad_id:fleet"),
        ("fleet/#/b/batch", "bad_id:fleet"),
        ("fleet//b/batch", "bad_id:fleet"),
        ("fleet/a/b c/batch", "bad_id:vehicle"),
        ("fleet/a/tàxi/batch", "bad_id:vehicle"),
        ("fleet/a/" + "x" * 65 + "/batch", "bad_id:vehicle"),
        ("fleet/a/b/Batch", "bad_channel"),
        ("fleet/a/b/telemetry", "bad_channel"),
        ("fleet/a/b/+", "bad_channel"),
        ("$share/g/fleet/a/b/batch", "bad_topic"),
        ("fleet/a/b/" + "x" * 500, "bad_topic"),
    ],
)
def test_parse_rejects(value: str, reason: str) -> None:
    with pytest.raises(InvalidTopic) as caught:
        parse_topic(value)
    assert caught.value.reason == reason


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(InvalidTopic):
        parse_topic(b"fleet/a/b/batch")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fleet", "vehicle", "reason"),
    [
        ("", "v", "bad_id:fleet"),
        ("f/x", "v", "bad_id:fleet"),
        ("f", "v+", "bad_id:vehicle"),
        ("f", "v#", "bad_id:vehicle"),
        ("f", "$SYS", "bad_id:vehicle"),
        ("f", "x" * 65, "bad_id:vehicle"),
        ("f", "v\n", "bad_id:vehicle"),
        ("f", 7, "bad_id:vehicle"),
    ],
)
def test_builders_reject_bad_ids(fleet: str, vehicle: str, reason: str) -> None:
    with pytest.raises(InvalidTopic) as caught:
        batch_topic(fleet, vehicle)
    assert caught.value.reason == reason


def test_builders_reject_bad_channel() -> None:
    with pytest.raises(InvalidTopic) as caught:
        topic("f", "v", "telemetry")
    assert caught.value.reason == "bad_channel"
    with pytest.raises(InvalidTopic):
        topic("f", "v", 3)  # type: ignore[arg-type]


def test_id_rule() -> None:
    assert is_valid_id("a")
    assert is_valid_id("A-z_09")
    assert is_valid_id("x" * 64)
    for bad in ("", "x" * 65, "a b", "a/b", "a+", "#", "é", "a\n", None, 5, b"ab"):
        assert not is_valid_id(bad)


def test_qos_and_retain() -> None:
    assert QOS == 1
    assert is_retained(Channel.STATUS)
    assert is_retained("status")
    for channel in (Channel.BATCH, Channel.EVENT, Channel.HEALTH, Channel.ACK):
        assert not is_retained(channel)


def test_filters() -> None:
    assert channel_filter(Channel.BATCH) == "fleet/+/+/batch"
    assert channel_filter("status", fleet_id="berlin") == "fleet/berlin/+/status"
    assert shared_filter("collectors", Channel.EVENT) == "$share/collectors/fleet/+/+/event"
    assert shared_filter("c", "batch", fleet_id="f1") == "$share/c/fleet/f1/+/batch"
    assert collector_filters("collectors") == (
        "$share/collectors/fleet/+/+/batch",
        "$share/collectors/fleet/+/+/event",
        "$share/collectors/fleet/+/+/health",
        "fleet/+/+/status",
    )
    assert collector_filters("g", fleet_id="f")[-1] == "fleet/f/+/status"


@pytest.mark.parametrize("group", ["", "a/b", "a+", "#", "x" * 65])
def test_bad_share_group(group: str) -> None:
    with pytest.raises(InvalidTopic) as caught:
        shared_filter(group, Channel.BATCH)
    assert caught.value.reason == "bad_id:group"


def test_bad_filter_fleet() -> None:
    with pytest.raises(InvalidTopic):
        channel_filter(Channel.BATCH, fleet_id="+")


@settings(max_examples=examples(200), deadline=None)
@given(ids, ids, st.sampled_from(Channel))
def test_build_then_parse(fleet: str, vehicle: str, channel: Channel) -> None:
    assert parse_topic(topic(fleet, vehicle, channel)) == (fleet, vehicle, channel)


@settings(max_examples=examples(300), deadline=None)
@given(
    st.text(max_size=160)
    | st.lists(st.sampled_from(["fleet", "a", "+", "", "batch", "ack"]), max_size=6).map("/".join)
)
def test_parse_anything(value: str) -> None:
    try:
        parts = parse_topic(value)
    except InvalidTopic:
        return
    assert topic(*parts) == value
