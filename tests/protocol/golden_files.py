"""The golden vectors: which file holds what, and how to (re)write them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import zstandard

from protocol import encode_ack, encode_batch, encode_status
from protocol.compression import decompress
from protocol.wire import unpack_map
from tests.protocol import samples

GOLDEN_DIR = Path(__file__).parent / "golden"
# zstd does not promise identical output across its versions; the compressed vectors were
# written with this one (see test_golden).
ZSTD_VERSION_FILE = GOLDEN_DIR / "ZSTD_VERSION"


def minimal_body() -> bytes:
    """The decompressed body of the minimal batch (shown in PROTOCOL.md)."""
    payload = encode_batch(samples.minimal_batch())
    frame = unpack_map(
        payload, max_str_len=1024, max_bin_len=1024, max_array_len=64, max_map_len=64
    )["body"]
    assert isinstance(frame, bytes)
    return bytes(decompress(frame, 1 << 20))


# name -> (encoder, depends on zstd output)
VECTORS: dict[str, tuple[Callable[[], bytes], bool]] = {
    "batch_v1_minimal": (lambda: encode_batch(samples.minimal_batch()), True),
    "batch_v1_minimal_body": (minimal_body, False),
    "batch_v1_full": (lambda: encode_batch(samples.full_batch()), True),
    "batch_v2_evidence": (lambda: encode_batch(samples.evidence_batch()), True),
    "ack_v1": (lambda: encode_ack(samples.ack()), False),
    "status_v1_online": (lambda: encode_status(samples.status_online()), False),
    "status_v1_offline": (lambda: encode_status(samples.status_offline()), False),
}


def to_hex(data: bytes) -> str:
    """32 bytes per line, lowercase, for reading and diffing."""
    text = data.hex()
    return "".join(text[i : i + 64] + "\n" for i in range(0, len(text), 64))


def zstd_version() -> str:
    return ".".join(map(str, zstandard.ZSTD_VERSION))


def same_zstd() -> bool:
    """Whether this zstd is the one that wrote the compressed golden vectors."""
    return ZSTD_VERSION_FILE.read_text().strip() == zstd_version()


def read(name: str) -> bytes:
    return (GOLDEN_DIR / f"{name}.bin").read_bytes()


def write_all() -> None:
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name, (encode, _) in VECTORS.items():
        data = encode()
        (GOLDEN_DIR / f"{name}.bin").write_bytes(data)
        (GOLDEN_DIR / f"{name}.hex").write_text(to_hex(data))
    ZSTD_VERSION_FILE.write_text(zstd_version() + "\n")
