"""Which reason wins when a payload has several faults: the order of PROTOCOL.md section 9.

Every case carries two faults (or more); the reason must be the one of the earlier check,
and the identity is known exactly when the payload got past the stable fields and the
topic match (steps 1-5), so that acknowledgement follows the documented order too.
"""

from __future__ import annotations

import copy
from typing import Any, Final

import msgpack
import pytest

from cloud_collector import validate
from cloud_collector.validate import Rejected, classify
from protocol import MAX_PAYLOAD_BYTES, compression, encode_status
from protocol.errors import REASON_PREFIXES, REASONS
from tests.protocol import samples
from tests.protocol.helpers import Wire, full_wire

HEADER, BODY = full_wire()
FLEET: Final = HEADER["flt"]
VEHICLE: Final = HEADER["veh"]
BATCH_TOPIC: Final = f"fleet/{FLEET}/{VEHICLE}/batch"
STATUS_TOPIC: Final = f"fleet/{FLEET}/{VEHICLE}/status"
DROP: Final = object()  # remove the key
# A time as msgpack's timestamp extension: an ext type like any other.
TIMESTAMP_EXT: Final = msgpack.Timestamp(1_700_000_000)


def _apply(fields: Wire, changes: dict[str, Any]) -> Wire:
    out = {**fields}
    for key, value in changes.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def batch(
    *,
    body_change: dict[str, Any] | None = None,
    frame: bytes | None = None,
    **changes: Any,
) -> bytes:
    """The full sample batch with envelope ``changes`` and top-level body changes."""
    body = _apply(copy.deepcopy(BODY), body_change or {})
    if frame is None:
        frame = compression.compress(msgpack.packb(body, use_bin_type=True))
    fields = _apply({**HEADER, "body": frame}, changes)
    return msgpack.packb(fields, use_bin_type=True)


def _bad_series() -> list[Wire]:
    series: list[Wire] = copy.deepcopy(BODY["sig"])
    series[0]["v"] = "not an array"
    return series


def _status(**changes: Any) -> bytes:
    fields = msgpack.unpackb(encode_status(samples.status_online()), raw=False)
    return msgpack.packb(_apply(fields, changes), use_bin_type=True)


NO_RECORDS: Final[dict[str, Any]] = {"ns": 0, "ne": 0, "ng": 0, "nf": 0, "nh": 0}

B: Final = BATCH_TOPIC
S: Final = STATUS_TOPIC
# topic, payload, reason, whether the identity is known
CASES: Final = [
    pytest.param(
        "fleet/a/b",
        b"\x00" * (MAX_PAYLOAD_BYTES + 1),
        "bad_topic",
        False,
        id="bad topic before size",
    ),
    pytest.param(
        "fleet/a b/c d/batch", b"", "bad_id:fleet", False, id="fleet id before vehicle id"
    ),
    pytest.param(
        f"fleet/{FLEET}/c d/nope", b"", "bad_id:vehicle", False, id="vehicle id before channel"
    ),
    pytest.param(
        f"fleet/{FLEET}/{VEHICLE}/ack",
        b"\xc1",
        "unexpected_channel",
        False,
        id="ack topic before payload",
    ),
    pytest.param(
        B,
        b"\xc1" * (MAX_PAYLOAD_BYTES + 1),
        "too_large_compressed",
        False,
        id="size before msgpack",
    ),
    pytest.param(
        B,
        batch(veh="other", t0=TIMESTAMP_EXT),
        "bad_msgpack",
        False,
        id="ext type before wrong vehicle",
    ),
    pytest.param(
        B,
        batch(v="x", flt=DROP),
        "bad_field:flt",
        False,
        id="missing stable key before bad stable value",
    ),
    pytest.param(B, batch(v="x", seq=-1), "bad_field:v", False, id="stable values in order"),
    pytest.param(
        B, batch(veh="other", ep=-1), "bad_field:ep", False, id="stable field before wrong vehicle"
    ),
    pytest.param(
        B,
        batch(flt="other", veh="other"),
        "wrong_fleet",
        False,
        id="wrong fleet before wrong vehicle",
    ),
    pytest.param(
        B, batch(veh="other", v=3), "wrong_vehicle", False, id="wrong vehicle before version"
    ),
    pytest.param(
        B, batch(v=3, body=DROP, zz=1), "unknown_version", True, id="version before body and keys"
    ),
    pytest.param(
        B, batch(body="text", t0=DROP), "bad_field:body", True, id="body before other keys"
    ),
    pytest.param(
        B, batch(ne=DROP, zz=1), "bad_field:ne", True, id="missing key before unknown key"
    ),
    pytest.param(
        B, batch(t1=DROP, ne=DROP), "bad_field:ne", True, id="first missing key in code-point order"
    ),
    pytest.param(B, batch(zz=1, seq=0), "unknown_field", True, id="unknown key before seq 0"),
    pytest.param(B, batch(seq=0, t0="x"), "bad_field:seq", True, id="seq 0 before t0"),
    pytest.param(B, batch(seq=0, t0=-1), "bad_field:seq", True, id="seq 0 before negative t0"),
    pytest.param(B, batch(t0="x", t1="y"), "bad_field:t0", True, id="t0 before t1"),
    pytest.param(
        B,
        batch(t0=-1, t1=-2, ns="x"),
        "time_before_1970",
        True,
        id="negative t0 before t1 and counts",
    ),
    pytest.param(
        B, batch(t1=HEADER["t0"] - 1, ns="x"), "bad_field:t1", True, id="t1 before t0 before counts"
    ),
    pytest.param(B, batch(ns="x", nh="y"), "bad_field:ns", True, id="counts in order"),
    pytest.param(
        B, batch(sent="x", **NO_RECORDS), "bad_field:body", True, id="no records before sent"
    ),
    pytest.param(
        B,
        batch(frame=b"not zstd", **NO_RECORDS),
        "bad_field:body",
        True,
        id="no records before the frame",
    ),
    pytest.param(
        B, batch(frame=b"not zstd", sent=-5), "time_before_1970", True, id="sent before the frame"
    ),
    pytest.param(B, batch(frame=b"not zstd", ns=0), "bad_zstd", True, id="frame before body"),
    pytest.param(
        B,
        batch(frame=compression.compress(b"\xc1"), ns=0),
        "bad_msgpack",
        True,
        id="body msgpack before counts",
    ),
    pytest.param(
        B,
        batch(body_change={"sig": _bad_series()}, ns=1),
        "bad_field:sig.v",
        True,
        id="body field before counts",
    ),
    pytest.param(
        B, batch(body_change={"zz": []}, ns=1), "unknown_field", True, id="body key before counts"
    ),
    pytest.param(B, batch(ns=1, nh=0), "bad_field:ns", True, id="counts compared in order"),
    pytest.param(S, b"\xc1" * 1025, "too_large_payload", False, id="status size before msgpack"),
    pytest.param(
        S, _status(v=2, state=DROP, zz=1), "unknown_version", False, id="status version before keys"
    ),
    pytest.param(
        S, _status(t=DROP, zz=1), "bad_field:t", False, id="status missing key before unknown key"
    ),
    pytest.param(
        S, _status(state="gone", t=-1), "bad_field:state", False, id="status state before t"
    ),
    pytest.param(S, _status(t=-1), "time_before_1970", False, id="status negative t"),
    pytest.param(S, _status(t=TIMESTAMP_EXT), "bad_msgpack", False, id="status timestamp t"),
]


@pytest.mark.parametrize(("topic", "payload", "reason", "identified"), CASES)
def test_the_earlier_check_wins(topic: str, payload: bytes, reason: str, identified: bool) -> None:
    outcome = classify(topic, payload)
    assert isinstance(outcome, Rejected)
    assert outcome.reason == reason
    assert (outcome.identity is not None) is identified
    # Every reason the collector gives is one of the documented vocabulary.
    assert reason in (*REASONS, *validate.REASONS) or reason.startswith(REASON_PREFIXES)


def test_the_cases_are_valid_without_their_faults() -> None:
    # The base payload is accepted, so each rejection above comes from the faults alone.
    assert not isinstance(classify(BATCH_TOPIC, batch()), Rejected)
    assert not isinstance(classify(STATUS_TOPIC, _status()), Rejected)
