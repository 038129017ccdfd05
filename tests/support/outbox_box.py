"""An outbox in a test's directory, on a monotonic clock the test moves by hand."""

from __future__ import annotations

from pathlib import Path

from edge_agent.batching import BatchPolicy
from edge_agent.outbox import Outbox

FLEET, VEHICLE = "fleet-1", "taxi-42"


class FakeMonotonic:
    """A monotonic clock the test moves by hand (seconds, like time.monotonic)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance_ms(self, ms: int) -> None:
        self.now += ms / 1000


async def open_box(
    path: Path,
    *,
    max_bytes: int = 256 << 20,
    policy: BatchPolicy | None = None,
    monotonic: FakeMonotonic | None = None,
) -> Outbox:
    return await Outbox.open(
        path,
        fleet_id=FLEET,
        vehicle_id=VEHICLE,
        max_bytes=max_bytes,
        policy=policy,
        monotonic=monotonic or FakeMonotonic(),
    )
