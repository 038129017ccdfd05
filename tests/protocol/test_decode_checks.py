"""Every kind of invalid payload is rejected with the documented error class and reason."""

from __future__ import annotations

from collections.abc import Callable

import msgpack
import pytest
import zstandard

from protocol import (
    DEFAULT_LIMITS,
    BatchIdentity,
    InvalidField,
    Limits,
    MalformedPayload,
    PayloadTooLarge,
    ProtocolError,
    UnsupportedSchemaVersion,
    decode_batch,
    encode_batch,
    peek_header,
    peek_identity,
)
from tests.protocol import samples
from tests.protocol.helpers import Wire, full_wire, join, mutated

FULL = samples.full_batch()
IDENTITY = FULL.header.identity


def _set(where: str, key: str, value: object) -> Callable[[Wire, Wire], None]:
    """Set ``key`` in the header ("h"), body ("b"), first series, event, fix, ... to value."""

    def change(header: Wire, body: Wire) -> None:
        target = {
            "h": header,
            "b": body,
            "sig": body["sig"][0],
            "evt": body["evt"][0],
            "fix": body["evt"][0]["fix"],
            "src": body["evt"][0]["src"],
            "gnss": body["gnss"],
            "frm": body["frm"],
            "hl": body["hl"][0],
        }[where]
        target[key] = value

    return change


def _drop(where: str, key: str) -> Callable[[Wire, Wire], None]:
    def change(header: Wire, body: Wire) -> None:
        target = header if where == "h" else body
        del target[key]

    return change


def _gnss_column(key: str, index: int, value: object) -> Callable[[Wire, Wire], None]:
    def change(header: Wire, body: Wire) -> None:
        body["gnss"][key][index] = value

    return change


def _frame_column(key: str, index: int, value: object) -> Callable[[Wire, Wire], None]:
    def change(header: Wire, body: Wire) -> None:
        body["frm"][key][index] = value

    return change


def _series_value(index: int, value: object) -> Callable[[Wire, Wire], None]:
    def change(header: Wire, body: Wire) -> None:
        body["sig"][0]["v"][index] = value

    return change


def _series_time(index: int, value: object) -> Callable[[Wire, Wire], None]:
    def change(header: Wire, body: Wire) -> None:
        body["sig"][0]["t"][index] = value

    return change


SPAN = FULL.header.last_ms - FULL.header.first_ms

BAD_FIELDS: list[tuple[str, Callable[[Wire, Wire], None], str]] = [
    # header
    ("seq negative", _set("h", "seq", -1), "bad_field:seq"),
    ("seq zero", _set("h", "seq", 0), "bad_field:seq"),
    ("seq bool", _set("h", "seq", True), "bad_field:seq"),
    ("seq float", _set("h", "seq", 1.0), "bad_field:seq"),
    ("epoch string", _set("h", "ep", "1"), "bad_field:ep"),
    ("vehicle with slash", _set("h", "veh", "a/b"), "bad_field:veh"),
    ("vehicle too long", _set("h", "veh", "x" * 65), "bad_field:veh"),
    ("fleet empty", _set("h", "flt", ""), "bad_field:flt"),
    ("fleet with plus", _set("h", "flt", "a+"), "bad_field:flt"),
    ("version zero", _set("h", "v", 0), "bad_field:v"),
    ("version string", _set("h", "v", "1"), "bad_field:v"),
    ("t0 negative", _set("h", "t0", -5), "bad_field:t0"),
    ("t1 before t0", _set("h", "t1", FULL.header.first_ms - 1), "bad_field:t1"),
    ("t1 beyond max time", _set("h", "t1", 2**53), "bad_field:t1"),
    ("sent float", _set("h", "sent", 1.5), "bad_field:sent"),
    ("count too high", _set("h", "ns", FULL.header.counts.signal_samples + 1), "bad_field:ns"),
    ("event count off", _set("h", "ne", 1), "bad_field:ne"),
    ("gnss count off", _set("h", "ng", 4), "bad_field:ng"),
    ("frame count off", _set("h", "nf", 0), "bad_field:nf"),
    ("health count off", _set("h", "nh", 2), "bad_field:nh"),
    ("missing t0", _drop("h", "t0"), "bad_field:t0"),
    ("missing seq", _drop("h", "seq"), "bad_field:seq"),
    # signals
    ("series name empty", _set("sig", "name", ""), "bad_field:sig.name"),
    ("series name control", _set("sig", "name", "a\nb"), "bad_field:sig.name"),
    ("series name too long", _set("sig", "name", "é" * 65), "bad_field:sig.name"),
    ("unit not a string", _set("sig", "unit", 1), "bad_field:sig.unit"),
    ("series empty", _set("sig", "t", []), "bad_field:sig.t"),
    ("series lengths differ", _set("sig", "v", [1.0]), "bad_field:sig.v"),
    ("value NaN", _series_value(2, float("nan")), "bad_field:sig.v"),
    ("value infinite", _series_value(0, float("-inf")), "bad_field:sig.v"),
    ("value string", _series_value(0, "1"), "bad_field:sig.v"),
    ("value bool", _series_value(0, True), "bad_field:sig.v"),
    ("value beyond int64", _series_value(0, 2**63), "bad_field:sig.v"),
    ("time beyond t1", _series_time(0, SPAN + 1), "bad_field:sig.t"),
    ("time negative", _series_time(0, -1), "bad_field:sig.t"),
    ("time float", _series_time(0, 0.5), "bad_field:sig.t"),
    ("series not a map", lambda h, b: b["sig"].__setitem__(0, [1, 2]), "bad_field:sig"),
    ("signals not an array", _set("b", "sig", {}), "bad_field:sig"),
    # events
    ("event type empty", _set("evt", "type", ""), "bad_field:evt.type"),
    ("event time beyond t1", _set("evt", "t", SPAN + 1), "bad_field:evt.t"),
    ("event speed NaN", _set("evt", "spd", float("nan")), "bad_field:evt.spd"),
    ("event attrs list", _set("evt", "attrs", [1]), "bad_field:evt.attrs"),
    ("event attr value list", _set("evt", "attrs", {"a": [1]}), "bad_field:evt.attrs"),
    ("event attr key empty", _set("evt", "attrs", {"": 1}), "bad_field:evt.attrs"),
    (
        "event attr too many",
        _set("evt", "attrs", {f"k{i}": i for i in range(65)}),
        "bad_field:evt.attrs",
    ),
    ("event attr NaN", _set("evt", "attrs", {"a": float("inf")}), "bad_field:evt.attrs"),
    ("fix lat above 90", _set("fix", "lat", 90.0001), "bad_field:evt.fix.lat"),
    ("fix lon below -180", _set("fix", "lon", -181), "bad_field:evt.fix.lon"),
    ("fix mode 4", _set("fix", "mode", 4), "bad_field:evt.fix.mode"),
    ("fix track 361", _set("fix", "trk", 361), "bad_field:evt.fix.trk"),
    ("fix speed negative", _set("fix", "spd", -0.1), "bad_field:evt.fix.spd"),
    ("fix clock float", _set("fix", "clk", 1.5), "bad_field:evt.fix.clk"),
    ("fix time negative", _set("fix", "t", -1), "bad_field:evt.fix.t"),
    ("fix not a map", _set("evt", "fix", 1), "bad_field:evt.fix"),
    ("fix missing key", lambda h, b: b["evt"][0]["fix"].pop("alt"), "bad_field:evt.fix.alt"),
    ("source id too big", _set("src", "id", 2**29), "bad_field:evt.src.id"),
    ("source bus empty", _set("src", "bus", ""), "bad_field:evt.src.bus"),
    # gnss columns
    ("gnss lat", _gnss_column("lat", 1, -91), "bad_field:gnss.lat"),
    ("gnss lat None", _gnss_column("lat", 1, None), "bad_field:gnss.lat"),
    ("gnss lon", _gnss_column("lon", 0, 180.5), "bad_field:gnss.lon"),
    ("gnss mode", _gnss_column("mode", 0, -1), "bad_field:gnss.mode"),
    ("gnss alt NaN", _gnss_column("alt", 0, float("nan")), "bad_field:gnss.alt"),
    ("gnss track", _gnss_column("trk", 0, -1), "bad_field:gnss.trk"),
    ("gnss clock", _gnss_column("clk", 0, 2**53), "bad_field:gnss.clk"),
    ("gnss time", _gnss_column("t", 0, SPAN + 1), "bad_field:gnss.t"),
    ("gnss column short", lambda h, b: b["gnss"]["spd"].pop(), "bad_field:gnss.spd"),
    ("gnss not a map", _set("b", "gnss", []), "bad_field:gnss"),
    # frames
    ("frame std id too big", _frame_column("id", 0, 0x800), "bad_field:frm.id"),
    ("frame ext id too big", _frame_column("id", 1, 2**29), "bad_field:frm.id"),
    ("frame data not bytes", _frame_column("data", 0, "01"), "bad_field:frm.data"),
    ("frame ext not bool", _frame_column("ext", 0, 0), "bad_field:frm.ext"),
    ("frame bus empty", _frame_column("bus", 0, ""), "bad_field:frm.bus"),
    ("frame time beyond", _frame_column("t", 0, SPAN * 1000 + 1000), "bad_field:frm.t"),
    ("frame column short", lambda h, b: b["frm"]["ext"].pop(), "bad_field:frm.ext"),
    # health
    ("health time", _set("hl", "t", SPAN + 1), "bad_field:hl.t"),
    ("health values", _set("hl", "values", {"a": {}}), "bad_field:hl.values"),
    ("health missing values", lambda h, b: b["hl"][0].pop("values"), "bad_field:hl.values"),
    # body map
    ("body missing key", _drop("b", "hl"), "bad_field:hl"),
]


@pytest.mark.parametrize(
    ("change", "reason"), [c[1:] for c in BAD_FIELDS], ids=[c[0] for c in BAD_FIELDS]
)
def test_bad_field(change: Callable[[Wire, Wire], None], reason: str) -> None:
    payload = mutated(change)
    with pytest.raises(InvalidField) as caught:
        decode_batch(payload)
    assert caught.value.reason == reason
    assert caught.value.field == reason.removeprefix("bad_field:")
    # The stable fields were readable, so the error says which batch it was.
    stable = {f"bad_field:{k}" for k in ("v", "flt", "veh", "ep", "seq")}
    if reason not in stable:
        assert caught.value.identity == IDENTITY


def test_seq_zero_is_invalid_but_identifiable() -> None:
    with pytest.raises(InvalidField) as caught:
        decode_batch(mutated(_set("h", "seq", 0)))
    assert caught.value.identity is not None
    assert caught.value.identity.seq == 0


def test_unchanged_wire_decodes() -> None:
    assert decode_batch(mutated(lambda h, b: None)) == FULL


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_set("h", "extra", 1), "unknown_field"),
        (_set("b", "extra", 1), "unknown_field"),
        (_set("evt", "extra", 1), "unknown_field"),
        (_set("gnss", "extra", []), "unknown_field"),
    ],
)
def test_unknown_field(change: Callable[[Wire, Wire], None], reason: str) -> None:
    with pytest.raises(MalformedPayload) as caught:
        decode_batch(mutated(change))
    assert caught.value.reason == reason
    assert not isinstance(caught.value, InvalidField)


def _raw_envelope(pairs: list[tuple[str, object]]) -> bytes:
    return msgpack.Packer(use_bin_type=True).pack_map_pairs(pairs)


def test_duplicate_key_is_rejected() -> None:
    header, _ = full_wire()
    pairs: list[tuple[str, object]] = [*header.items(), ("seq", 1), ("body", b"x")]
    with pytest.raises(MalformedPayload) as caught:
        peek_identity(_raw_envelope(pairs))
    assert caught.value.reason == "bad_msgpack"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb("x"),
        msgpack.packb({1: 2}),
        msgpack.packb({b"v": 1}, use_bin_type=True),
        encode_batch(FULL) + b"\x00",
        join({**full_wire()[0], "t0": msgpack.ExtType(5, b"x")}, full_wire()[1]),
    ],
    ids=["empty", "reserved byte", "array", "string", "int key", "binary key", "trailing", "ext"],
)
def test_bad_msgpack_envelope(payload: bytes) -> None:
    with pytest.raises(MalformedPayload) as caught:
        decode_batch(payload)
    assert caught.value.reason == "bad_msgpack"
    assert caught.value.identity is None


def test_timestamp_ext_is_not_a_time() -> None:
    # An ext type like any other (PROTOCOL.md section 1), although msgpack decodes it.
    header, body = full_wire()
    with pytest.raises(MalformedPayload) as caught:
        decode_batch(join({**header, "t0": msgpack.Timestamp(1)}, body))
    assert caught.value.reason == "bad_msgpack"
    assert caught.value.identity is None


def test_body_not_binary() -> None:
    header, _ = full_wire()
    payload = msgpack.packb({**header, "body": "text"})
    with pytest.raises(InvalidField) as caught:
        decode_batch(payload)
    assert caught.value.reason == "bad_field:body"
    assert caught.value.identity == IDENTITY
    with pytest.raises(InvalidField, match="missing"):
        decode_batch(msgpack.packb(header))


def _with_frame(frame: bytes) -> bytes:
    header, _ = full_wire()
    return join(header, None, frame=frame)


def _good_frame() -> bytes:
    _, body = full_wire()
    return zstandard.ZstdCompressor(write_checksum=True).compress(msgpack.packb(body))


def _dict_frame() -> bytes:
    # A frame header that names dictionary 7: descriptor bit 0 set, one id byte after it.
    frame = _good_frame()
    return frame[:4] + bytes([frame[4] | 1, 7]) + frame[5:]


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"not zstd at all",
        _good_frame()[:-1],
        _good_frame()[:10],
        _good_frame() + b"\x00",
        _good_frame() + _good_frame(),
        b"\x50\x2a\x4d\x18\x04\x00\x00\x00abcd" + _good_frame(),  # skippable frame first
        _good_frame()[:-4] + bytes(4),  # wrong checksum
    ],
    ids=[
        "empty",
        "no magic",
        "cut checksum",
        "cut header",
        "trailing byte",
        "two frames",
        "skippable",
        "bad checksum",
    ],
)
def test_bad_zstd(frame: bytes) -> None:
    with pytest.raises(MalformedPayload) as caught:
        decode_batch(_with_frame(frame))
    assert caught.value.reason == "bad_zstd"
    assert caught.value.identity == IDENTITY


def test_zstd_frame_with_dictionary_is_rejected() -> None:
    with pytest.raises(MalformedPayload) as caught:
        decode_batch(_with_frame(_dict_frame()))
    assert caught.value.reason == "bad_zstd"


def test_zstd_frame_without_checksum_or_content_size_is_accepted() -> None:
    # Consumers accept any single plain frame; only the reference encoder's choice is fixed.
    header, body = full_wire()
    compressor = zstandard.ZstdCompressor(write_checksum=False, write_content_size=False)
    payload = join(header, None, frame=compressor.compress(msgpack.packb(body)))
    assert decode_batch(payload) == FULL


def test_body_not_msgpack() -> None:
    frame = zstandard.ZstdCompressor().compress(b"\xc1")
    with pytest.raises(MalformedPayload) as caught:
        decode_batch(_with_frame(frame))
    assert caught.value.reason == "bad_msgpack"
    assert caught.value.identity == IDENTITY


def test_body_not_a_map() -> None:
    with pytest.raises(MalformedPayload) as caught:
        decode_batch(join(full_wire()[0], [1, 2, 3]))
    assert caught.value.reason == "bad_msgpack"


def test_body_string_too_long() -> None:
    payload = mutated(_set("evt", "attrs", {"note": "x" * 1025}))
    with pytest.raises(PayloadTooLarge) as caught:
        decode_batch(payload)
    assert caught.value.reason == "too_large_element"
    assert caught.value.identity == IDENTITY


def test_body_frame_data_too_long() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        decode_batch(mutated(_frame_column("data", 0, bytes(65))))
    assert caught.value.reason == "too_large_element"


def test_text_limit_is_in_utf8_bytes() -> None:
    ok = mutated(_set("evt", "attrs", {"note": "é" * 512}))  # 1024 bytes
    assert decode_batch(ok).events[0].attrs == {"note": "é" * 512}
    with pytest.raises(PayloadTooLarge):
        decode_batch(mutated(_set("evt", "attrs", {"note": "é" * 512 + "x"})))


def test_payload_too_large_is_checked_first() -> None:
    garbage = b"\xc1" * (DEFAULT_LIMITS.max_payload_bytes + 1)
    for decode in (decode_batch, peek_header, peek_identity):
        with pytest.raises(PayloadTooLarge) as caught:
            decode(garbage)
        assert caught.value.reason == "too_large_compressed"


def test_tighter_limits() -> None:
    payload = encode_batch(FULL)
    with pytest.raises(PayloadTooLarge, match="too_large_compressed"):
        decode_batch(payload, Limits(max_payload_bytes=len(payload) - 1))
    with pytest.raises(PayloadTooLarge, match="too_large_decompressed"):
        decode_batch(payload, Limits(max_body_bytes=100))
    with pytest.raises(PayloadTooLarge, match="too_large_element"):
        decode_batch(payload, Limits(max_array_len=2))
    assert decode_batch(payload, Limits(max_payload_bytes=len(payload))) == FULL


def test_limits_must_be_positive_ints() -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        Limits(max_body_bytes=0)
    with pytest.raises(ValueError, match="max_array_len"):
        Limits(max_array_len=1.5)  # type: ignore[arg-type]


def test_buffer_types_are_accepted() -> None:
    payload = encode_batch(FULL)
    assert decode_batch(bytearray(payload)) == FULL
    assert decode_batch(memoryview(payload)) == FULL


def test_non_bytes_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        decode_batch("text")  # type: ignore[arg-type]


class TestUnknownVersion:
    """A future version: the stable fields are all a v1 consumer can rely on."""

    FUTURE = msgpack.packb(
        {
            "v": 3,
            "flt": "demo",
            "veh": "taxi-001",
            "ep": 5,
            "seq": 9,
            "new_field": [1, 2, {"x": "y"}],
            "body": b"v3 bodies may be anything",
        },
        use_bin_type=True,
    )
    IDENTITY = BatchIdentity(
        schema_version=3, fleet_id="demo", vehicle_id="taxi-001", epoch=5, seq=9
    )

    def test_identity_is_readable(self) -> None:
        assert peek_identity(self.FUTURE) == self.IDENTITY

    @pytest.mark.parametrize("decode", [peek_header, decode_batch])
    def test_decoders_raise_with_identity(self, decode: Callable[[bytes], object]) -> None:
        with pytest.raises(UnsupportedSchemaVersion) as caught:
            decode(self.FUTURE)
        assert caught.value.reason == "unknown_version"
        assert caught.value.version == 3
        assert caught.value.identity == self.IDENTITY

    def test_missing_stable_field_gives_no_identity(self) -> None:
        fields = msgpack.unpackb(self.FUTURE)
        del fields["ep"]
        with pytest.raises(InvalidField) as caught:
            decode_batch(msgpack.packb(fields))
        assert caught.value.reason == "bad_field:ep"
        assert caught.value.identity is None


def test_errors_are_protocol_errors() -> None:
    for cls in (InvalidField, MalformedPayload, PayloadTooLarge, UnsupportedSchemaVersion):
        assert issubclass(cls, ProtocolError)
