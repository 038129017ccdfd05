"""validate.classify: every hostile payload gets the right reason, good ones pass."""

from __future__ import annotations

import resource
import time

import msgpack
import pytest

from cloud_collector.validate import (
    TIME_BEFORE_1970,
    WRONG_FLEET,
    WRONG_VEHICLE,
    Accepted,
    PresenceUpdate,
    Rejected,
    classify,
    sender_of,
    stamped_ms,
)
from harness.collector import (
    FLEET,
    GARBAGE,
    bad_body,
    make_batch,
    oversize,
    payload,
    unknown_version,
    wrong_vehicle,
    zstd_bomb,
)
from protocol import Channel, Presence, Status, encode_status
from protocol.envelope import header_to_wire

TOPIC = f"fleet/{FLEET}/taxi-1/batch"
EP = 0xFEDCBA9876543210


def test_good_batch_is_accepted() -> None:
    out = classify(f"fleet/{FLEET}/taxi-1/event", payload("taxi-1", EP, 3))
    assert isinstance(out, Accepted)
    assert out.channel is Channel.EVENT
    assert (out.batch.header.vehicle_id, out.batch.header.epoch, out.batch.header.seq) == (
        "taxi-1",
        EP,
        3,
    )


@pytest.mark.parametrize("data", [b"", GARBAGE, b"\xc1", b"\x80", b"\x91\x01"])
def test_garbage_has_no_identity(data: bytes) -> None:
    out = classify(TOPIC, data)
    assert isinstance(out, Rejected)
    assert out.identity is None
    assert out.reason.startswith(("bad_msgpack", "bad_field:")), out.reason
    assert (out.fleet, out.vehicle) == (FLEET, "taxi-1")


def test_oversize_rejected_before_parsing() -> None:
    out = classify(TOPIC, oversize("taxi-1", EP, 1))
    assert isinstance(out, Rejected)
    assert out.reason == "too_large_compressed"
    assert out.identity is None


def test_zstd_bomb_is_bounded() -> None:
    data = zstd_bomb("taxi-1", EP, 4)
    assert len(data) < 1 << 20
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    out = classify(TOPIC, data)
    elapsed = time.perf_counter() - started
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert isinstance(out, Rejected)
    assert out.reason == "too_large_decompressed"
    # Identity readable and matching: quarantined under it and acknowledged.
    assert out.identity is not None
    assert out.identity.seq == 4
    assert elapsed < 2.0
    assert grown_kib < 200 * 1024  # far below the 2 GiB the frame inflates to


def test_wrong_vehicle_gets_no_identity() -> None:
    out = classify(TOPIC, wrong_vehicle("taxi-1", EP, 1))
    assert isinstance(out, Rejected)
    assert out.reason == WRONG_VEHICLE
    assert out.identity is None  # never a receipt under a foreign identity


def test_wrong_fleet() -> None:
    out = classify("fleet/other/taxi-1/batch", payload("taxi-1", EP, 1))
    assert isinstance(out, Rejected)
    assert out.reason == WRONG_FLEET


def test_unknown_version_keeps_identity() -> None:
    out = classify(TOPIC, unknown_version("taxi-1", EP, 9))
    assert isinstance(out, Rejected)
    assert out.reason == "unknown_version"
    assert out.identity is not None
    assert (out.identity.vehicle_id, out.identity.epoch, out.identity.seq) == ("taxi-1", EP, 9)


def test_bad_body_keeps_identity() -> None:
    out = classify(TOPIC, bad_body("taxi-1", EP, 2))
    assert isinstance(out, Rejected)
    assert out.reason == "bad_zstd"
    assert out.identity is not None


@pytest.mark.parametrize(
    "topic", ["fleet/demo/taxi-1", "fleet/demo/taxi 1/batch", "fleet/demo/taxi-1/nope", "x/y"]
)
def test_bad_topics(topic: str) -> None:
    out = classify(topic, payload("taxi-1", EP, 1))
    assert isinstance(out, Rejected)
    assert out.reason.startswith(("bad_topic", "bad_id:", "bad_channel"))


def test_status_messages() -> None:
    status = Status(state=Presence.OFFLINE, time_ms=1_700_000_000_000)
    out = classify(f"fleet/{FLEET}/taxi-1/status", encode_status(status))
    assert out == PresenceUpdate(FLEET, "taxi-1", status)
    assert classify(f"fleet/{FLEET}/taxi-1/status", b"") == PresenceUpdate(FLEET, "taxi-1", None)
    bad = classify(f"fleet/{FLEET}/taxi-1/status", GARBAGE)
    assert isinstance(bad, Rejected)
    assert bad.reason == "bad_msgpack"


def test_ack_topic_is_not_ingested() -> None:
    out = classify(f"fleet/{FLEET}/taxi-1/ack", payload("taxi-1", EP, 1))
    assert isinstance(out, Rejected)
    assert out.reason == "unexpected_channel"


@pytest.mark.parametrize("key", ["sent", "t0", "t1"])
def test_batch_time_before_1970_is_a_clear_rejection(key: str) -> None:
    """A gateway clock before 1970 stamps negative times: one named reason, identity kept
    (the batch is quarantined and acknowledged like any unreadable one)."""
    batch = make_batch("taxi-1", EP, 4)
    data = msgpack.packb({**header_to_wire(batch.header), "body": b"\x00", key: -1_000})
    out = classify(TOPIC, data)
    assert isinstance(out, Rejected)
    assert out.reason == TIME_BEFORE_1970
    assert out.identity is not None
    assert out.identity.seq == 4


def test_status_time_before_1970_is_a_clear_rejection() -> None:
    data = msgpack.packb({"v": 1, "state": "online", "t": -1})
    assert classify(f"fleet/{FLEET}/taxi-1/status", data) == Rejected(
        TIME_BEFORE_1970, FLEET, "taxi-1"
    )
    # Any other bad time keeps the protocol's own reason.
    other = classify(f"fleet/{FLEET}/taxi-1/status", msgpack.packb({"v": 1, "state": "x", "t": 1}))
    assert isinstance(other, Rejected)
    assert other.reason == "bad_field:state"


def test_sender_and_stamped_time() -> None:
    assert sender_of(f"fleet/{FLEET}/taxi-1/batch") == "taxi-1"
    assert sender_of("fleet/x/" + "v" * 500 + "/status") == "v" * 64
    assert sender_of("nonsense") == ""
    batch = make_batch("taxi-1", EP, 4)
    assert stamped_ms(batch) == max(batch.header.sent_ms, batch.header.last_ms)
