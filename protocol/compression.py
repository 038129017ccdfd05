"""zstd for batch bodies: deterministic compression and bounded decompression.

Decompression never trusts the frame. It first walks the frame's block headers (cheap, no
decompression) to prove the input is exactly one complete frame with nothing after it and
to reject a frame whose raw and RLE blocks alone already exceed the limit. Then it streams
the frame out in chunks and stops as soon as more than ``max_size`` bytes come out, so a
bomb costs at most ``max_size`` bytes of output plus the bounded decoder window, whatever
content size the frame declares.
"""

from __future__ import annotations

from typing import Final

import zstandard

from protocol.errors import BAD_ZSTD, TOO_LARGE_DECOMPRESSED, MalformedPayload, PayloadTooLarge
from protocol.limits import MAX_ZSTD_WINDOW_BYTES, MiB

# The level is part of the encoding: a fixed level makes the bytes reproducible (golden
# vectors). Level 3 is zstd's own default, a good speed/ratio balance for small inputs.
DEFAULT_LEVEL: Final = 3
MIN_LEVEL: Final = 1
MAX_LEVEL: Final = 19  # the "ultra" levels above need far more memory for little gain

ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
_BLOCK_MAX: Final = 128 * 1024  # zstd's Block_Maximum_Size
_BLOCK_RAW: Final = 0
_BLOCK_RLE: Final = 1
_BLOCK_COMPRESSED: Final = 2
_BLOCK_RESERVED: Final = 3
_CHECKSUM_BYTES: Final = 4
_READ_CHUNK: Final = 1 * MiB
_MIN_READ_CHUNK: Final = 64 * 1024


def compress(data: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    """One zstd frame with content size and checksum, no dictionary."""
    if type(level) is not int or not MIN_LEVEL <= level <= MAX_LEVEL:
        raise ValueError(f"zstd level must be an int in [{MIN_LEVEL}, {MAX_LEVEL}], not {level!r}")
    compressor = zstandard.ZstdCompressor(
        level=level, write_checksum=True, write_content_size=True, write_dict_id=False
    )
    return compressor.compress(data)


def _bad(detail: str) -> MalformedPayload:
    return MalformedPayload(BAD_ZSTD, detail)


def _too_large(size: int, max_size: int) -> PayloadTooLarge:
    return PayloadTooLarge(TOO_LARGE_DECOMPRESSED, f"at least {size} bytes, limit {max_size}")


def check_frame(frame: bytes, max_size: int) -> int | None:
    """Check that ``frame`` is exactly one complete zstd frame; return its declared content
    size (None if absent). Raises PayloadTooLarge if it provably decompresses to more than
    ``max_size`` bytes."""
    params, position, declared = _check_header(frame, max_size)
    position = _walk_blocks(frame, position, max_size)
    if params.has_checksum:
        position += _CHECKSUM_BYTES
    end = len(frame)
    if position > end:
        raise _bad("truncated frame")
    if position < end:
        raise _bad(f"{end - position} bytes after the frame")
    return declared


def _check_header(frame: bytes, max_size: int) -> tuple[zstandard.FrameParameters, int, int | None]:
    """The frame's parameters, where its first block starts, and its declared size."""
    if frame[:4] != ZSTD_MAGIC:
        raise _bad("no zstd frame magic (skippable frames are not allowed)")
    try:
        params = zstandard.get_frame_parameters(frame)
        position = zstandard.frame_header_size(frame)
    except zstandard.ZstdError as exc:
        raise _bad(f"frame header: {exc}") from None
    if params.dict_id:
        raise _bad("frame needs a dictionary")
    if params.window_size > MAX_ZSTD_WINDOW_BYTES:
        raise _bad(f"window of {params.window_size} bytes, limit {MAX_ZSTD_WINDOW_BYTES}")
    declared: int | None = params.content_size
    if declared == zstandard.CONTENTSIZE_UNKNOWN:
        declared = None
    elif declared is not None and declared > max_size:
        raise _too_large(declared, max_size)
    return params, position, declared


def _walk_blocks(frame: bytes, position: int, max_size: int) -> int:
    """Walk the block headers from ``position``; return where the last block ends.

    Raw and RLE blocks state their decompressed size; compressed blocks are bounded by
    _BLOCK_MAX, which the streaming step enforces. The walk costs one iteration per
    block: ~0.15 s for the worst case, a 1 MiB payload of empty 3-byte blocks.
    """
    known = 0
    end = len(frame)
    while True:
        if position + 3 > end:
            raise _bad("truncated frame")
        header = int.from_bytes(frame[position : position + 3], "little")
        position += 3
        kind = (header >> 1) & 3
        size = header >> 3
        if size > _BLOCK_MAX:
            raise _bad(f"block of {size} bytes")
        if kind == _BLOCK_RESERVED:
            raise _bad("reserved block type")
        position += 1 if kind == _BLOCK_RLE else size
        if kind != _BLOCK_COMPRESSED:
            known += size
            if known > max_size:
                raise _too_large(known, max_size)
        if header & 1:  # the last block
            return position


def decompress(frame: bytes, max_size: int) -> bytes | bytearray:
    """Decompress one zstd frame, allocating at most ``max_size`` + 1 bytes of output.

    The result is a bytearray when the output took more than one read (no final copy).
    """
    declared = check_frame(frame, max_size)
    # A declared size only chooses the first read size (one read, one exact allocation for an
    # honest frame); the output is capped regardless of it.
    chunk = _READ_CHUNK if declared is None else max(declared + 1, _MIN_READ_CHUNK)
    first = b""
    rest = bytearray()  # only for frames that take more than one read
    total = 0
    decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW_BYTES)
    try:
        with decompressor.stream_reader(frame) as reader:
            while True:
                part = reader.read(min(chunk, max_size + 1 - total))
                if not part:
                    break
                total += len(part)
                if total > max_size:
                    raise _too_large(total, max_size)
                if not first:
                    first = part
                else:
                    # Appending each part as it comes keeps the peak near one copy of the
                    # output, unlike collecting the parts and joining them at the end.
                    if not rest:
                        rest += first
                    rest += part
    except zstandard.ZstdError as exc:
        raise _bad(str(exc)[:200]) from None
    if declared is not None and total != declared:
        raise _bad(f"frame declares {declared} bytes but holds {total}")
    return rest if rest else first
