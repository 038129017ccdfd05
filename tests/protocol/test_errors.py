"""The exception tree and its machine-readable reasons."""

from __future__ import annotations

import pickle

from protocol import (
    BatchIdentity,
    InvalidField,
    InvalidTopic,
    MalformedPayload,
    PayloadTooLarge,
    ProtocolError,
    UnsupportedSchemaVersion,
)

IDENTITY = BatchIdentity(1, "f", "v", 2, 3)


def test_tree() -> None:
    for cls in (MalformedPayload, PayloadTooLarge, UnsupportedSchemaVersion, InvalidTopic):
        assert issubclass(cls, ProtocolError)
    assert issubclass(InvalidField, MalformedPayload)


def test_reason_detail_and_str() -> None:
    err = PayloadTooLarge("too_large_compressed", "2000000 bytes")
    assert err.reason == "too_large_compressed"
    assert err.detail == "2000000 bytes"
    assert str(err) == "too_large_compressed: 2000000 bytes"
    assert str(MalformedPayload("bad_zstd")) == "bad_zstd"
    field = InvalidField("gnss.lat", "91 is outside [-90, 90]")
    assert (field.reason, field.field) == ("bad_field:gnss.lat", "gnss.lat")
    version = UnsupportedSchemaVersion(4)
    assert (version.reason, version.version, version.detail) == (
        "unknown_version",
        4,
        "schema version 4",
    )


def test_pickle_keeps_everything() -> None:
    errors: list[ProtocolError] = [
        MalformedPayload("bad_msgpack", "x", identity=IDENTITY),
        InvalidField("seq", "negative", identity=IDENTITY),
        UnsupportedSchemaVersion(2, identity=IDENTITY),
        PayloadTooLarge("too_large_decompressed"),
        InvalidTopic("bad_topic", "t"),
    ]
    for err in errors:
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err)
        assert (copy.reason, copy.detail, copy.identity) == (err.reason, err.detail, err.identity)
        assert str(copy) == str(err)
    copied_field = pickle.loads(pickle.dumps(errors[1]))
    assert isinstance(copied_field, InvalidField)
    assert copied_field.field == "seq"
    copied_version = pickle.loads(pickle.dumps(errors[2]))
    assert isinstance(copied_version, UnsupportedSchemaVersion)
    assert copied_version.version == 2
