"""Size and range limits of the wire protocol (PROTOCOL.md, "Limits").

Every limit exists so that a consumer's memory and CPU per payload are bounded before it
looks at the data: the compressed size is checked first, the body is decompressed with a
hard output cap, and msgpack is unpacked with length caps on every string, binary, array
and map. Producers enforce the same limits when encoding, so a valid producer never emits
a payload a consumer rejects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

KiB: Final = 1024
MiB: Final = 1024 * KiB

# Whole MQTT payload of a batch, as sent; checked before anything else is done.
MAX_PAYLOAD_BYTES: Final = 1 * MiB
# Decompressed body; enforced while decompressing, so a zstd bomb stops at this size.
MAX_BODY_BYTES: Final = 16 * MiB
# Largest zstd window a body frame may ask for. A frame never needs a window larger than
# its content, and the decoder allocates the window, so this bounds decoder memory too.
MAX_ZSTD_WINDOW_BYTES: Final = 16 * MiB
# Elements of any single msgpack array in the body (a signal's samples, a GNSS column...).
MAX_ARRAY_LEN: Final = 1 << 20

# Lengths of strings in UTF-8 bytes.
MAX_ID_LEN: Final = 64  # fleet and vehicle ids (ASCII, see protocol.ids)
MAX_NAME_BYTES: Final = 128  # signal names, units, event types, bus names, map keys
MAX_TEXT_BYTES: Final = 1024  # string values in event attrs and health values

MAX_ATTRS: Final = 64  # entries in one event's attrs
MAX_HEALTH_VALUES: Final = 256  # entries in one health snapshot
MAX_FRAME_DATA_BYTES: Final = 64  # CAN FD maximum

# Ack and status payloads are tiny; anything larger is rejected unread.
MAX_CONTROL_PAYLOAD_BYTES: Final = 1 * KiB

UINT64_MAX: Final = 2**64 - 1
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
# Absolute times are ms since the Unix epoch in [0, MAX_TIME_MS]. 2**53 - 1 is exact as a
# double (JSON and JavaScript consumers), and the same time in microseconds still fits an
# int64, so raw-frame times never overflow. It is about 285,000 years.
MAX_TIME_MS: Final = 2**53 - 1
# Signed ms durations (a GNSS clock offset) are within +-MAX_TIME_MS.
MAX_DURATION_MS: Final = MAX_TIME_MS

MAX_CAN_ID: Final = 2**29 - 1  # 29-bit extended identifier
MAX_STD_CAN_ID: Final = 2**11 - 1  # 11-bit standard identifier


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The limits a decoder enforces; a consumer may pass tighter ones than the default."""

    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    max_body_bytes: int = MAX_BODY_BYTES
    max_array_len: int = MAX_ARRAY_LEN

    def __post_init__(self) -> None:
        for name in ("max_payload_bytes", "max_body_bytes", "max_array_len"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"Limits.{name} must be a positive int, not {value!r}")


DEFAULT_LIMITS: Final = Limits()
