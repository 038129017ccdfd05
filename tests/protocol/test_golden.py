"""Golden byte vectors: the encoding of fixed values must never change by accident."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from protocol import (
    SCHEMA_VERSION,
    Batch,
    decode_ack,
    decode_batch,
    decode_status,
    encode_batch,
    peek_header,
)
from protocol.compression import decompress
from protocol.wire import unpack_map
from tests.protocol import samples
from tests.protocol.golden_files import (
    GOLDEN_DIR,
    VECTORS,
    ZSTD_VERSION_FILE,
    read,
    same_zstd,
    to_hex,
    zstd_version,
)

SAME_ZSTD = same_zstd()


def test_schema_version_has_golden_vectors() -> None:
    # A new schema version needs its own vectors next to the old ones, which stay.
    assert SCHEMA_VERSION == 1
    assert (GOLDEN_DIR / f"batch_v{SCHEMA_VERSION}_minimal.bin").exists()


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_hex_file_matches_bin_file(name: str) -> None:
    assert (GOLDEN_DIR / f"{name}.hex").read_text() == to_hex(read(name))


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_encoding_gives_golden_bytes(name: str) -> None:
    encode, needs_same_zstd = VECTORS[name]
    if needs_same_zstd and not SAME_ZSTD:
        pytest.skip(
            f"golden payloads were compressed by zstd {ZSTD_VERSION_FILE.read_text().strip()}, "
            f"this is {zstd_version()}; the uncompressed parts are still compared below"
        )
    assert encode() == read(name)


def _envelope_and_body(payload: bytes) -> tuple[dict[str, object], bytes]:
    fields = unpack_map(
        payload, max_str_len=1 << 20, max_bin_len=1 << 20, max_array_len=64, max_map_len=64
    )
    frame = fields.pop("body")
    assert isinstance(frame, bytes)
    return fields, bytes(decompress(frame, 1 << 24))


@pytest.mark.parametrize(
    ("name", "batch"),
    [
        ("batch_v1_minimal", samples.minimal_batch),
        ("batch_v1_full", samples.full_batch),
        ("batch_v2_evidence", samples.evidence_batch),
    ],
)
def test_uncompressed_parts_match_golden_with_any_zstd(
    name: str, batch: Callable[[], Batch]
) -> None:
    # Independent of the zstd version: the header fields and the decompressed body.
    ours = _envelope_and_body(encode_batch(batch()))
    golden = _envelope_and_body(read(name))
    assert ours == golden


def test_minimal_body_vector_is_the_minimal_batch_body() -> None:
    assert _envelope_and_body(read("batch_v1_minimal"))[1] == read("batch_v1_minimal_body")


def test_golden_batches_decode_to_the_samples() -> None:
    assert decode_batch(read("batch_v1_minimal")) == samples.minimal_batch()
    assert decode_batch(read("batch_v1_full")) == samples.full_batch()
    assert peek_header(read("batch_v1_full")) == samples.full_batch().header
    assert decode_batch(read("batch_v2_evidence")) == samples.evidence_batch()


def test_golden_control_payloads_decode_to_the_samples() -> None:
    assert decode_ack(read("ack_v1")) == samples.ack()
    assert decode_status(read("status_v1_online")) == samples.status_online()
    assert decode_status(read("status_v1_offline")) == samples.status_offline()


def test_reencoding_golden_batches_is_stable() -> None:
    for name in ("batch_v1_minimal", "batch_v1_full", "batch_v2_evidence"):
        payload = read(name)
        again = encode_batch(decode_batch(payload))
        if SAME_ZSTD:
            assert again == payload
        assert _envelope_and_body(again) == _envelope_and_body(payload)
