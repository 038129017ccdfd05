"""Vehicle presence on ``fleet/<fleet>/<vehicle>/status``, published retained with QoS 1.

The agent registers ``offline`` as its MQTT will when it connects and publishes ``online``
right after connecting; on a clean shutdown it publishes ``offline`` itself. The will is
composed at connect time, so its ``t`` is the connect time, not the moment the connection
was lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from protocol import checks, wire
from protocol.envelope import MAX_SCHEMA_VERSION
from protocol.errors import UnsupportedSchemaVersion
from protocol.limits import MAX_CONTROL_PAYLOAD_BYTES, MAX_TIME_MS

STATUS_SCHEMA_VERSION: Final = 1
STATUS_KEYS: Final = frozenset({"v", "state", "t"})


class Presence(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """``state`` as of ``time_ms`` (the agent's clock, ms since the Unix epoch, UTC)."""

    state: Presence
    time_ms: int
    schema_version: int = STATUS_SCHEMA_VERSION


def _from_wire(fields: dict[str, object]) -> Status:
    if "v" not in fields:
        checks.fail("v", "missing")
    version = checks.int_in(fields["v"], "v", 1, MAX_SCHEMA_VERSION)
    if version != STATUS_SCHEMA_VERSION:
        raise UnsupportedSchemaVersion(version, f"status schema version {version}")
    checks.fields(fields, "", STATUS_KEYS)
    state = fields["state"]
    if type(state) is not str and type(state) is not Presence:
        checks.fail("state", f"expected a string, got {type(state).__name__}")
    try:
        presence = Presence(state)
    except ValueError:
        checks.fail("state", f"{checks.show(state)} is not one of {[p.value for p in Presence]}")
    return Status(
        schema_version=version,
        state=presence,
        time_ms=checks.uint(fields["t"], "t", MAX_TIME_MS),
    )


def encode_status(status: Status) -> bytes:
    """The status payload; raises InvalidField or UnsupportedSchemaVersion if invalid."""
    fields: dict[str, object] = {
        "v": status.schema_version,
        "state": status.state,
        "t": status.time_ms,
    }
    checked = _from_wire(fields)
    fields["state"] = checked.state.value  # a plain str on the wire
    return wire.pack(fields)


def decode_status(payload: bytes | bytearray) -> Status:
    """Decode and check a status payload; raises a ProtocolError subclass if invalid.

    An empty payload on a status topic is not a status: MQTT uses it to clear the retained
    message. Callers handle that case before calling this.
    """
    return _from_wire(wire.unpack_control(payload, MAX_CONTROL_PAYLOAD_BYTES))
