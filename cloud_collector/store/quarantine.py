"""Quarantine in the store: rejected payloads kept for an operator, within bounds.

Quarantine is storage a sender controls, so what it keeps is capped (``QuarantineLimits``):
a prefix of each payload with its full size and SHA-256, and per sender and UTC day a
number of payloads and bytes, counted in ``quarantine_budget``; beyond the quota only
the counters move. A retained message already in quarantine (same topic and hash) is not
stored again: the broker delivers it anew at every subscribe.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Final

from cloud_collector.store.base import (
    QUARANTINE_OVER_CAP,
    QUARANTINE_REPEAT,
    QUARANTINE_STORED,
    QuarantineLimits,
    utc_day,
)
from cloud_collector.validate import UNKNOWN_VERSION, sender_of

if TYPE_CHECKING:
    from cloud_collector.store.engine import Tx

# Longest topic kept with a quarantined payload (topics of invalid ids can be long).
MAX_TOPIC_CHARS: Final = 512


async def quarantine(  # noqa: PLR0913 - one keyword per column of the quarantine row
    tx: Tx,
    *,
    topic: str,
    payload: bytes,
    reason: str,
    received_ms: int,
    fleet: str | None,
    vehicle: str | None,
    limits: QuarantineLimits,
    retained: bool = False,
    identified: bool = False,
) -> str:
    """Keep what ``limits`` allow of ``payload``; one of ``QUARANTINE_*``.

    ``identified``: the payload's identity was readable and is acknowledged end to end,
    so the taxi deletes it: keep up to ``keep_identified_bytes`` of it. An identified batch
    of an unknown schema version is always kept whole, over the quota too: it is a newer
    agent's valid data, to be processed after an upgrade (PROTOCOL.md 3.2), and the taxi
    no longer has it once acknowledged."""
    digest = hashlib.sha256(payload).digest()
    topic = topic[:MAX_TOPIC_CHARS]
    if retained and await tx.fetch(
        "SELECT 1 FROM quarantine WHERE sha256 = ? AND topic = ? LIMIT 1", digest, topic
    ):
        return QUARANTINE_REPEAT
    if vehicle is not None:
        await tx.execute(
            "INSERT INTO vehicle_status (vehicle, fleet, quarantined) VALUES (?, ?, 1)"
            " ON CONFLICT (vehicle) DO UPDATE SET quarantined = vehicle_status.quarantined + 1",
            vehicle, fleet or "",
        )  # fmt: skip
    sender = sender_of(topic)
    day = utc_day(received_ms)
    kept = payload[: limits.keep_identified_bytes if identified else limits.keep_bytes]
    await tx.execute(
        "INSERT INTO quarantine_budget (sender, day) VALUES (?, ?) ON CONFLICT DO NOTHING",
        sender, day,
    )  # fmt: skip
    exempt = identified and reason == UNKNOWN_VERSION
    granted = await tx.fetch(
        "UPDATE quarantine_budget SET stored = stored + 1, stored_bytes = stored_bytes + ?"
        " WHERE sender = ? AND day = ? AND (? OR (stored < ? AND stored_bytes + ? <= ?))"
        " RETURNING stored",
        len(kept), sender, day, exempt, limits.max_per_sender_day, len(kept),
        limits.max_bytes_per_sender_day,
    )  # fmt: skip
    if not granted:
        await tx.execute(
            "UPDATE quarantine_budget SET dropped = dropped + 1,"
            " dropped_bytes = dropped_bytes + ? WHERE sender = ? AND day = ?",
            len(payload), sender, day,
        )  # fmt: skip
        return QUARANTINE_OVER_CAP
    await tx.execute(
        "INSERT INTO quarantine (received_ms, topic, fleet, vehicle, reason, payload, size,"
        " sha256, sender) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        received_ms, topic, fleet, vehicle, reason, kept, len(payload), digest, sender,
    )  # fmt: skip
    return QUARANTINE_STORED
