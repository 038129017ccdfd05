"""The wire protocol between the taxi edge agent and the cloud collector.

Pure code: no I/O, no clocks, no asyncio. The specification is PROTOCOL.md next to this file.
"""

from protocol.ack import ACK_SCHEMA_VERSION, Ack, decode_ack, encode_ack
from protocol.batch import Batch
from protocol.body import Body
from protocol.codec import decode_batch, encode_batch, peek_header, peek_identity
from protocol.compression import DEFAULT_LEVEL
from protocol.envelope import (
    SCHEMA_VERSION,
    SUPPORTED_VERSIONS,
    BatchHeader,
    BatchIdentity,
    RecordCounts,
)
from protocol.errors import (
    InvalidField,
    InvalidTopic,
    MalformedPayload,
    PayloadTooLarge,
    ProtocolError,
    UnsupportedSchemaVersion,
)
from protocol.ids import is_valid_id
from protocol.limits import (
    DEFAULT_LIMITS,
    MAX_ARRAY_LEN,
    MAX_BODY_BYTES,
    MAX_CONTROL_PAYLOAD_BYTES,
    MAX_PAYLOAD_BYTES,
    Limits,
)
from protocol.notices import EVICTION_NOTICE, eviction_notice
from protocol.records import (
    Event,
    FrameRef,
    GnssFix,
    Health,
    RawFrame,
    RecordKind,
    Scalar,
    SignalSeries,
)
from protocol.status import STATUS_SCHEMA_VERSION, Presence, Status, decode_status, encode_status
from protocol.topics import (
    QOS,
    Channel,
    TopicParts,
    ack_topic,
    batch_topic,
    channel_filter,
    collector_filters,
    event_topic,
    health_topic,
    is_retained,
    parse_topic,
    shared_filter,
    status_topic,
    topic,
)

__all__ = [
    "ACK_SCHEMA_VERSION",
    "DEFAULT_LEVEL",
    "DEFAULT_LIMITS",
    "EVICTION_NOTICE",
    "MAX_ARRAY_LEN",
    "MAX_BODY_BYTES",
    "MAX_CONTROL_PAYLOAD_BYTES",
    "MAX_PAYLOAD_BYTES",
    "QOS",
    "SCHEMA_VERSION",
    "STATUS_SCHEMA_VERSION",
    "SUPPORTED_VERSIONS",
    "Ack",
    "Batch",
    "BatchHeader",
    "BatchIdentity",
    "Body",
    "Channel",
    "Event",
    "FrameRef",
    "GnssFix",
    "Health",
    "InvalidField",
    "InvalidTopic",
    "Limits",
    "MalformedPayload",
    "PayloadTooLarge",
    "Presence",
    "ProtocolError",
    "RawFrame",
    "RecordCounts",
    "RecordKind",
    "Scalar",
    "SignalSeries",
    "Status",
    "TopicParts",
    "UnsupportedSchemaVersion",
    "ack_topic",
    "batch_topic",
    "channel_filter",
    "collector_filters",
    "decode_ack",
    "decode_batch",
    "decode_status",
    "encode_ack",
    "encode_batch",
    "encode_status",
    "event_topic",
    "eviction_notice",
    "health_topic",
    "is_retained",
    "is_valid_id",
    "parse_topic",
    "peek_header",
    "peek_identity",
    "shared_filter",
    "status_topic",
    "topic",
]
