"""The batch envelope: the uncompressed header around the compressed body.

A batch payload is one msgpack map. Its header fields sit next to ``body`` (the zstd frame),
so a consumer can check size, version and identity before it decompresses anything.

The stable fields ``v``, ``flt``, ``veh``, ``ep`` and ``seq`` keep their key, type and
meaning in every schema version: a consumer can identify, quarantine and acknowledge even
a batch whose version it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from protocol import checks
from protocol.errors import UnsupportedSchemaVersion
from protocol.limits import MAX_TIME_MS

SCHEMA_VERSION: Final = 1
# Schema 2 adds the evidence link of raw frames (``frm.ev``); the header is the same. The
# encoder writes the lowest version that can express a batch, so a batch without linked
# frames stays version 1 and consumers of version 1 keep reading it.
EVIDENCE_SCHEMA_VERSION: Final = 2
SUPPORTED_VERSIONS: Final = frozenset({SCHEMA_VERSION, EVIDENCE_SCHEMA_VERSION})
# Versions are small positive integers; anything else cannot be a version at all.
MAX_SCHEMA_VERSION: Final = 0xFFFF
# Counts cannot exceed what fits a body; the cap keeps them in uint32 for consumers.
MAX_COUNT: Final = 2**32 - 1

# Wire keys of the envelope map, in the order the encoder writes them.
K_VERSION: Final = "v"
K_FLEET: Final = "flt"
K_VEHICLE: Final = "veh"
K_EPOCH: Final = "ep"
K_SEQ: Final = "seq"
K_FIRST: Final = "t0"
K_LAST: Final = "t1"
K_SENT: Final = "sent"
K_SIGNAL_SAMPLES: Final = "ns"
K_EVENTS: Final = "ne"
K_GNSS_FIXES: Final = "ng"
K_RAW_FRAMES: Final = "nf"
K_HEALTH: Final = "nh"
K_BODY: Final = "body"

STABLE_KEYS: Final = (K_VERSION, K_FLEET, K_VEHICLE, K_EPOCH, K_SEQ)
HEADER_KEYS_V1: Final = frozenset(
    {
        *STABLE_KEYS,
        K_FIRST,
        K_LAST,
        K_SENT,
        K_SIGNAL_SAMPLES,
        K_EVENTS,
        K_GNSS_FIXES,
        K_RAW_FRAMES,
        K_HEALTH,
    }
)


@dataclass(frozen=True, slots=True)
class BatchIdentity:
    """The stable header fields: what identifies a batch in every schema version.

    ``(vehicle_id, epoch, seq)`` identifies a batch; a redelivered batch has the same one.
    """

    schema_version: int
    fleet_id: str
    vehicle_id: str
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordCounts:
    """Records per kind; ``signal_samples`` counts samples over all series, not series."""

    signal_samples: int = 0
    events: int = 0
    gnss_fixes: int = 0
    raw_frames: int = 0
    health: int = 0

    @property
    def total(self) -> int:
        return self.signal_samples + self.events + self.gnss_fixes + self.raw_frames + self.health


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchHeader:
    """The envelope header. Times are ms since the Unix epoch, UTC.

    ``first_ms``/``last_ms`` bound the times of all records in the body; ``sent_ms`` is the
    agent's clock when it encoded the batch (not part of the identity).
    """

    fleet_id: str
    vehicle_id: str
    epoch: int
    seq: int
    first_ms: int
    last_ms: int
    sent_ms: int
    counts: RecordCounts = field(default_factory=RecordCounts)
    schema_version: int = SCHEMA_VERSION

    @property
    def identity(self) -> BatchIdentity:
        return BatchIdentity(
            self.schema_version, self.fleet_id, self.vehicle_id, self.epoch, self.seq
        )


def header_to_wire(header: BatchHeader) -> dict[str, object]:
    """The header's envelope fields, without ``body``, in wire order."""
    counts = header.counts
    return {
        K_VERSION: header.schema_version,
        K_FLEET: header.fleet_id,
        K_VEHICLE: header.vehicle_id,
        K_EPOCH: header.epoch,
        K_SEQ: header.seq,
        K_FIRST: header.first_ms,
        K_LAST: header.last_ms,
        K_SENT: header.sent_ms,
        K_SIGNAL_SAMPLES: counts.signal_samples,
        K_EVENTS: counts.events,
        K_GNSS_FIXES: counts.gnss_fixes,
        K_RAW_FRAMES: counts.raw_frames,
        K_HEALTH: counts.health,
    }


def identity_from_wire(fields: dict[str, object]) -> BatchIdentity:
    """Read the stable fields, whatever the schema version; other keys are not looked at."""
    for key in STABLE_KEYS:
        if key not in fields:
            checks.fail(key, "missing")
    return BatchIdentity(
        schema_version=checks.int_in(fields[K_VERSION], K_VERSION, 1, MAX_SCHEMA_VERSION),
        fleet_id=checks.ident(fields[K_FLEET], K_FLEET),
        vehicle_id=checks.ident(fields[K_VEHICLE], K_VEHICLE),
        epoch=checks.uint(fields[K_EPOCH], K_EPOCH),
        seq=checks.uint(fields[K_SEQ], K_SEQ),
    )


def header_from_wire(fields: dict[str, object]) -> BatchHeader:
    """Check a complete header map of a supported version (without ``body``) and return it.

    Raises UnsupportedSchemaVersion, carrying the identity, for any other version.
    """
    identity = identity_from_wire(fields)
    if identity.schema_version not in SUPPORTED_VERSIONS:
        raise UnsupportedSchemaVersion(identity.schema_version, identity=identity)
    checks.fields(fields, "", HEADER_KEYS_V1)
    if identity.seq == 0:
        # Readable as identity (stable range), but no schema-1 batch has it: an epoch numbers
        # its batches from 1, and an ack's seq 0 means "nothing stored yet".
        checks.fail(K_SEQ, "0 is reserved; batches are numbered from 1")
    first_ms = checks.uint(fields[K_FIRST], K_FIRST, MAX_TIME_MS)
    last_ms = checks.uint(fields[K_LAST], K_LAST, MAX_TIME_MS)
    if last_ms < first_ms:
        checks.fail(K_LAST, f"{last_ms} is before {K_FIRST} {first_ms}")
    counts = RecordCounts(
        signal_samples=checks.uint(fields[K_SIGNAL_SAMPLES], K_SIGNAL_SAMPLES, MAX_COUNT),
        events=checks.uint(fields[K_EVENTS], K_EVENTS, MAX_COUNT),
        gnss_fixes=checks.uint(fields[K_GNSS_FIXES], K_GNSS_FIXES, MAX_COUNT),
        raw_frames=checks.uint(fields[K_RAW_FRAMES], K_RAW_FRAMES, MAX_COUNT),
        health=checks.uint(fields[K_HEALTH], K_HEALTH, MAX_COUNT),
    )
    if counts.total == 0:
        checks.fail(K_BODY, "a batch carries at least one record")
    return BatchHeader(
        schema_version=identity.schema_version,
        fleet_id=identity.fleet_id,
        vehicle_id=identity.vehicle_id,
        epoch=identity.epoch,
        seq=identity.seq,
        first_ms=first_ms,
        last_ms=last_ms,
        sent_ms=checks.uint(fields[K_SENT], K_SENT, MAX_TIME_MS),
        counts=counts,
    )
