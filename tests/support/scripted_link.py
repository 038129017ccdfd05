"""A link the test scripts by hand, for the uplink's delivery loop: it records what is
published, answers PUBACKs after a delay, and delivers only the acks the test queues."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from edge_agent.uplink import Link, UplinkError, UplinkSettings
from protocol import Ack
from protocol.codec import peek_identity

FLEET, VEHICLE = "test-fleet", "taxi-1"


class ScriptedLink:
    """Records publishes; PUBACKs after ``delay_s``; acks are fed by the test."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.published: list[tuple[str, int]] = []
        self.ack_queue: asyncio.Queue[Ack] = asyncio.Queue(100)
        self.fail_after: int | None = None

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, timeout_s: float | None = None
    ) -> None:
        if self.fail_after is not None and len(self.published) >= self.fail_after:
            raise UplinkError("link down")
        await asyncio.sleep(self.delay_s)
        self.published.append((topic.rsplit("/", 1)[1], peek_identity(payload).seq))

    async def acks(self) -> AsyncIterator[Ack]:
        while True:
            yield await self.ack_queue.get()


def connector_for(link: ScriptedLink) -> object:
    @contextlib.asynccontextmanager
    async def connect(settings: UplinkSettings) -> AsyncIterator[Link]:
        yield link

    return connect


def uplink_settings(port: int = 1, **kw: object) -> UplinkSettings:
    base: dict[str, object] = {
        "fleet_id": FLEET,
        "vehicle_id": VEHICLE,
        "host": "127.0.0.1",
        "port": port,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
        "publish_timeout_s": 5.0,
    }
    base.update(kw)
    return UplinkSettings(**base)  # type: ignore[arg-type]


async def until(predicate: object, timeout_s: float) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - the predicates are plain counters
            await asyncio.sleep(0.01)
