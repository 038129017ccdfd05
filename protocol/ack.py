"""The end-to-end acknowledgement, collector -> vehicle on ``fleet/<fleet>/<vehicle>/ack``.

The collector sends it after its database commit. ``seq`` is the highest seq of ``epoch``
such that every batch 1..seq of that epoch is durably stored (committed or quarantined), 0
while batch 1 is not; the agent may then delete every batch of that epoch with a seq up to
it. Acks are cumulative and
idempotent: a duplicate or an older ack (lower seq) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from protocol import checks, wire
from protocol.envelope import MAX_SCHEMA_VERSION
from protocol.errors import UnsupportedSchemaVersion
from protocol.limits import MAX_CONTROL_PAYLOAD_BYTES, MAX_TIME_MS

ACK_SCHEMA_VERSION: Final = 1
ACK_KEYS: Final = frozenset({"v", "veh", "ep", "seq", "t"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """All batches 1..``seq`` of ``epoch`` from ``vehicle_id`` are durably stored.

    ``time_ms`` is the collector's clock at the commit, ms since the Unix epoch, UTC.
    """

    vehicle_id: str
    epoch: int
    seq: int
    time_ms: int
    schema_version: int = ACK_SCHEMA_VERSION


def _from_wire(fields: dict[str, object]) -> Ack:
    if "v" not in fields:
        checks.fail("v", "missing")
    version = checks.int_in(fields["v"], "v", 1, MAX_SCHEMA_VERSION)
    if version != ACK_SCHEMA_VERSION:
        raise UnsupportedSchemaVersion(version, f"ack schema version {version}")
    checks.fields(fields, "", ACK_KEYS)
    return Ack(
        schema_version=version,
        vehicle_id=checks.ident(fields["veh"], "veh"),
        epoch=checks.uint(fields["ep"], "ep"),
        seq=checks.uint(fields["seq"], "seq"),
        time_ms=checks.uint(fields["t"], "t", MAX_TIME_MS),
    )


def encode_ack(ack: Ack) -> bytes:
    """The ack payload; raises InvalidField or UnsupportedSchemaVersion for a bad ``ack``."""
    fields: dict[str, object] = {
        "v": ack.schema_version,
        "veh": ack.vehicle_id,
        "ep": ack.epoch,
        "seq": ack.seq,
        "t": ack.time_ms,
    }
    _from_wire(fields)
    return wire.pack(fields)


def decode_ack(payload: bytes | bytearray) -> Ack:
    """Decode and check an ack payload; raises a ProtocolError subclass if invalid."""
    return _from_wire(wire.unpack_control(payload, MAX_CONTROL_PAYLOAD_BYTES))
