"""The wire protocol's exception tree.

Every error carries ``reason``: a short machine-readable string from a fixed vocabulary, fit
for a quarantine reason or a metrics label. Reasons never contain data from the payload (a
vehicle could otherwise blow up label cardinality); the human-readable ``detail`` may.

Reasons:

- ``too_large_compressed``: the payload exceeds the compressed-size limit.
- ``too_large_decompressed``: the body would decompress to more than the body limit.
- ``too_large_payload``: an ack or status payload exceeds its (small) size limit.
- ``too_large_element``: a msgpack string, binary, array or map exceeds its length limit.
- ``bad_msgpack``: not valid msgpack, trailing bytes, an ext type (the timestamp type -1
  too), invalid UTF-8, a non-string or duplicate map key, or the top level is not a map.
- ``bad_zstd``: the body is not exactly one valid zstd frame of the allowed kind.
- ``unknown_version``: the schema version is not one this code reads.
- ``unknown_field``: a map has a key the schema version does not define.
- ``bad_field:<path>``: a field is missing or has a wrong type or an out-of-range value;
  ``<path>`` is the field's wire path from PROTOCOL.md, e.g. ``seq`` or ``gnss.lat``.
- ``bad_topic``, ``bad_channel``, ``bad_id:<what>``: an MQTT topic or an id in it is invalid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from protocol.envelope import BatchIdentity

TOO_LARGE_COMPRESSED = "too_large_compressed"
TOO_LARGE_DECOMPRESSED = "too_large_decompressed"
TOO_LARGE_PAYLOAD = "too_large_payload"
TOO_LARGE_ELEMENT = "too_large_element"
BAD_MSGPACK = "bad_msgpack"
BAD_ZSTD = "bad_zstd"
UNKNOWN_VERSION = "unknown_version"
UNKNOWN_FIELD = "unknown_field"
BAD_FIELD_PREFIX = "bad_field:"
BAD_TOPIC = "bad_topic"
BAD_CHANNEL = "bad_channel"
BAD_ID_PREFIX = "bad_id:"

# Every reason above: the fixed ones, and the prefixes of those completed by a name
# (``bad_field:`` by a field path, ``bad_id:`` by ``fleet`` or ``vehicle``).
REASONS = (
    TOO_LARGE_COMPRESSED,
    TOO_LARGE_DECOMPRESSED,
    TOO_LARGE_PAYLOAD,
    TOO_LARGE_ELEMENT,
    BAD_MSGPACK,
    BAD_ZSTD,
    UNKNOWN_VERSION,
    UNKNOWN_FIELD,
    BAD_TOPIC,
    BAD_CHANNEL,
)
REASON_PREFIXES = (BAD_FIELD_PREFIX, BAD_ID_PREFIX)


class ProtocolError(Exception):
    """Base of every error the protocol package raises on purpose.

    ``identity`` is set when the payload's stable header fields could be read before the
    error was found, so a consumer can quarantine the payload under its batch identity and
    still acknowledge it.
    """

    def __init__(
        self, reason: str, detail: str = "", *, identity: BatchIdentity | None = None
    ) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail
        self.identity = identity

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


class MalformedPayload(ProtocolError):  # noqa: N818 - names are part of the package's API
    """The bytes cannot be decoded or do not follow the schema."""


class InvalidField(MalformedPayload):
    """One field is missing or has a wrong type or value; ``field`` is its wire path.

    Raised by the decoders for received payloads and by the encoders for values that could
    not be sent, so a producer can never emit what a consumer would reject.
    """

    def __init__(
        self, field: str, detail: str = "", *, identity: BatchIdentity | None = None
    ) -> None:
        super().__init__(BAD_FIELD_PREFIX + field, detail, identity=identity)
        self.field = field
        # ``args`` are what pickle passes back to ``__init__``; ``identity`` travels in __dict__.
        self.args = (field, detail)


class PayloadTooLarge(ProtocolError):  # noqa: N818 - names are part of the package's API
    """A size limit is exceeded; raised before the oversized data is allocated."""


class UnsupportedSchemaVersion(ProtocolError):  # noqa: N818 - names are part of the package's API
    """The schema version is unknown; ``identity`` holds the stable header fields."""

    def __init__(
        self, version: int, detail: str = "", *, identity: BatchIdentity | None = None
    ) -> None:
        super().__init__(UNKNOWN_VERSION, detail or f"schema version {version}", identity=identity)
        self.version = version
        self.args = (version, self.detail)


class InvalidTopic(ProtocolError):  # noqa: N818 - names are part of the package's API
    """An MQTT topic, topic filter or an id that goes into one is invalid."""
