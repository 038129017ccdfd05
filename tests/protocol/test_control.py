"""Ack and status payloads."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    MAX_CONTROL_PAYLOAD_BYTES,
    Ack,
    InvalidField,
    MalformedPayload,
    PayloadTooLarge,
    Presence,
    ProtocolError,
    Status,
    UnsupportedSchemaVersion,
    decode_ack,
    decode_status,
    encode_ack,
    encode_status,
)
from protocol.limits import MAX_TIME_MS
from tests.protocol.strategies import ids, uint64
from tests.support.examples import examples

ACK = {"v": 1, "veh": "taxi-001", "ep": 5, "seq": 9, "t": 1_700_000_000_000}
STATUS = {"v": 1, "state": "online", "t": 1_700_000_000_000}


def _pack(fields: object) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


class TestAck:
    def test_round_trip(self) -> None:
        ack = Ack(vehicle_id="taxi-001", epoch=5, seq=9, time_ms=1_700_000_000_000)
        assert encode_ack(ack) == _pack(ACK)
        assert decode_ack(_pack(ACK)) == ack
        assert decode_ack(bytearray(_pack(ACK))) == ack

    @settings(max_examples=examples(100), deadline=None)
    @given(ids, uint64, uint64, st.integers(0, MAX_TIME_MS))
    def test_round_trip_any(self, vehicle: str, epoch: int, seq: int, time_ms: int) -> None:
        ack = Ack(vehicle_id=vehicle, epoch=epoch, seq=seq, time_ms=time_ms)
        assert decode_ack(encode_ack(ack)) == ack

    @pytest.mark.parametrize(
        ("key", "value", "reason"),
        [
            ("veh", "a/b", "bad_field:veh"),
            ("veh", None, "bad_field:veh"),
            ("ep", -1, "bad_field:ep"),
            ("ep", "5", "bad_field:ep"),
            ("seq", -1, "bad_field:seq"),
            ("seq", 1.0, "bad_field:seq"),
            ("seq", False, "bad_field:seq"),
            ("t", -1, "bad_field:t"),
            ("t", 2**53, "bad_field:t"),
            ("v", 0, "bad_field:v"),
            ("v", "1", "bad_field:v"),
        ],
    )
    def test_bad_field(self, key: str, value: object, reason: str) -> None:
        with pytest.raises(InvalidField) as caught:
            decode_ack(_pack({**ACK, key: value}))
        assert caught.value.reason == reason

    def test_missing_and_unknown_keys(self) -> None:
        for key in ACK:
            fields = dict(ACK)
            del fields[key]
            with pytest.raises(InvalidField) as caught:
                decode_ack(_pack(fields))
            assert caught.value.reason == f"bad_field:{key}"
        with pytest.raises(MalformedPayload) as unknown:
            decode_ack(_pack({**ACK, "extra": 1}))
        assert unknown.value.reason == "unknown_field"

    def test_unknown_version(self) -> None:
        with pytest.raises(UnsupportedSchemaVersion) as caught:
            decode_ack(_pack({"v": 2, "anything": "else"}))
        assert caught.value.version == 2

    def test_encode_checks(self) -> None:
        with pytest.raises(InvalidField, match="bad_field:seq"):
            encode_ack(Ack(vehicle_id="v", epoch=0, seq=-1, time_ms=0))
        with pytest.raises(InvalidField, match="bad_field:ep"):
            encode_ack(Ack(vehicle_id="v", epoch=2**64, seq=0, time_ms=0))
        with pytest.raises(UnsupportedSchemaVersion):
            encode_ack(Ack(vehicle_id="v", epoch=0, seq=0, time_ms=0, schema_version=2))

    def test_too_large(self) -> None:
        payload = _pack({**ACK, "pad": "x" * MAX_CONTROL_PAYLOAD_BYTES})
        with pytest.raises(PayloadTooLarge) as caught:
            decode_ack(payload)
        assert caught.value.reason == "too_large_payload"

    @pytest.mark.parametrize("payload", [b"", b"\xc1", _pack([1]), _pack(ACK) + b"\x00"])
    def test_not_a_map(self, payload: bytes) -> None:
        with pytest.raises(MalformedPayload) as caught:
            decode_ack(payload)
        assert caught.value.reason == "bad_msgpack"


class TestStatus:
    def test_round_trip(self) -> None:
        for state in Presence:
            status = Status(state=state, time_ms=1_700_000_000_000)
            payload = encode_status(status)
            assert payload == _pack({**STATUS, "state": state.value})
            assert decode_status(payload) == status

    def test_plain_string_state_is_accepted_when_encoding(self) -> None:
        status = Status(state="offline", time_ms=1)  # type: ignore[arg-type]
        assert decode_status(encode_status(status)).state is Presence.OFFLINE

    @pytest.mark.parametrize(
        ("key", "value", "reason"),
        [
            ("state", "ONLINE", "bad_field:state"),
            ("state", "", "bad_field:state"),
            ("state", 1, "bad_field:state"),
            ("state", None, "bad_field:state"),
            ("t", -1, "bad_field:t"),
            ("t", 1.5, "bad_field:t"),
            ("v", None, "bad_field:v"),
        ],
    )
    def test_bad_field(self, key: str, value: object, reason: str) -> None:
        with pytest.raises(InvalidField) as caught:
            decode_status(_pack({**STATUS, key: value}))
        assert caught.value.reason == reason

    def test_encode_checks(self) -> None:
        with pytest.raises(InvalidField):
            encode_status(Status(state="away", time_ms=0))  # type: ignore[arg-type]
        with pytest.raises(InvalidField):
            encode_status(Status(state=Presence.ONLINE, time_ms=-1))

    def test_empty_payload_is_not_a_status(self) -> None:
        # A retained message being cleared: callers check for it first.
        with pytest.raises(MalformedPayload):
            decode_status(b"")

    def test_unknown_version_and_keys(self) -> None:
        with pytest.raises(UnsupportedSchemaVersion):
            decode_status(_pack({**STATUS, "v": 3}))
        with pytest.raises(MalformedPayload, match="unknown_field"):
            decode_status(_pack({**STATUS, "epoch": 1}))


@settings(max_examples=examples(200), deadline=None)
@given(st.binary(max_size=64))
def test_control_garbage(data: bytes) -> None:
    for decode in (decode_ack, decode_status):
        with contextlib.suppress(ProtocolError):
            decode(data)
