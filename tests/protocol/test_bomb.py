"""zstd bombs: tiny payloads that would decompress to gigabytes must fail fast and small.

tracemalloc sees the Python allocations (the decompressed output); ru_maxrss sees the
process's peak resident memory, including zstd's own buffers.
"""

from __future__ import annotations

import resource
import time
import tracemalloc
from collections.abc import Callable, Iterator

import msgpack
import pytest
import zstandard

from protocol import MAX_BODY_BYTES, Limits, MalformedPayload, PayloadTooLarge, decode_batch
from protocol.compression import ZSTD_MAGIC, check_frame, decompress
from tests.protocol.helpers import full_wire, join

GiB = 1 << 30
BLOCK = 128 * 1024
WINDOW_128K = 0x38  # Window_Descriptor: exponent 7, mantissa 0 -> 2**17 bytes


def rle_bomb(total: int, *, declared: int | None = None) -> bytes:
    """A frame of RLE blocks, 4 bytes per 128 KiB of output; optionally declaring a size."""
    if declared is None:
        header = bytes([0x00, WINDOW_128K])
    else:  # Frame_Content_Size_flag 2: four size bytes after the window descriptor
        header = bytes([0x80, WINDOW_128K]) + declared.to_bytes(4, "little")
    blocks = total // BLOCK
    rle = (1 << 1 | BLOCK << 3).to_bytes(3, "little") + b"\x00"
    last = (1 | 1 << 1 | BLOCK << 3).to_bytes(3, "little") + b"\x00"
    return ZSTD_MAGIC + header + rle * (blocks - 1) + last


def compressed_bomb(total: int) -> bytes:
    """A frame of ordinary compressed blocks from zstd itself, with no content size."""
    pattern = bytes(range(256)) * 4096  # 1 MiB that is not one repeated byte (no RLE blocks)
    compressor = zstandard.ZstdCompressor(level=1, write_content_size=False).compressobj()
    parts = [compressor.compress(pattern) for _ in range(total // len(pattern))]
    return b"".join(parts) + compressor.flush()


@pytest.fixture(scope="module")
def big_compressed_bomb() -> bytes:
    return compressed_bomb(GiB)


def _bombs(compressed: bytes) -> Iterator[tuple[str, bytes]]:
    yield "rle 1 GiB", rle_bomb(GiB)
    yield "rle 4 GiB declaring 1 KiB", rle_bomb(4 * GiB, declared=1024)
    yield "rle 1 GiB declaring 1 GiB", rle_bomb(GiB, declared=GiB)
    yield "compressed 1 GiB", compressed


def _measure(action: Callable[[], object]) -> tuple[float, int, int]:
    """Seconds, peak traced bytes, growth of peak RSS in bytes."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    started = time.perf_counter()
    try:
        action()
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return elapsed, peak, rss_after - rss_before


def test_bombs_are_small(big_compressed_bomb: bytes) -> None:
    for name, frame in _bombs(big_compressed_bomb):
        assert len(frame) < 1 << 20, name


def test_bomb_payloads_raise_quickly_in_bounded_memory(big_compressed_bomb: bytes) -> None:
    header, _ = full_wire()
    for name, frame in _bombs(big_compressed_bomb):
        payload = join(header, None, frame=frame)

        def decode(payload: bytes = payload) -> None:
            with pytest.raises(PayloadTooLarge) as caught:
                decode_batch(payload)
            assert caught.value.reason == "too_large_decompressed"

        elapsed, peak, rss_growth = _measure(decode)
        assert elapsed < 2.0, name
        # The output cap (16 MiB) plus one read chunk and bookkeeping; never the 1 GiB.
        assert peak < MAX_BODY_BYTES + (8 << 20), (name, peak)
        assert rss_growth < 256 << 20, (name, rss_growth)


def test_rle_bomb_is_refused_from_block_headers_alone() -> None:
    frame = rle_bomb(GiB)

    def check() -> None:
        with pytest.raises(PayloadTooLarge):
            check_frame(frame, MAX_BODY_BYTES)

    elapsed, peak, _ = _measure(check)
    assert peak < 1 << 20
    assert elapsed < 0.5


def test_output_stops_just_past_the_limit() -> None:
    limit = 3 * BLOCK + 17
    with pytest.raises(PayloadTooLarge, match="at least"):
        decompress(compressed_bomb(8 << 20), limit)
    # Exactly at the limit is fine.
    exact = zstandard.ZstdCompressor().compress(bytes(range(256)) * (limit // 256))
    assert len(decompress(exact, limit // 256 * 256)) == limit // 256 * 256


def test_huge_window_is_refused() -> None:
    # Window_Descriptor exponent 20: a 1 GiB window the decoder would have to allocate.
    frame = ZSTD_MAGIC + bytes([0x00, 20 << 3]) + (1 | 1 << 1 | 1 << 3).to_bytes(3, "little") + b"x"
    with pytest.raises(MalformedPayload) as caught:
        decompress(frame, MAX_BODY_BYTES)
    assert caught.value.reason == "bad_zstd"


def test_body_exactly_at_the_limit_decodes() -> None:
    header, body = full_wire()
    data = msgpack.packb(body)
    frame = zstandard.ZstdCompressor().compress(data)
    payload = join(header, None, frame=frame)
    assert decode_batch(payload, Limits(max_body_bytes=len(data))).header.seq == header["seq"]
    with pytest.raises(PayloadTooLarge):
        decode_batch(payload, Limits(max_body_bytes=len(data) - 1))
