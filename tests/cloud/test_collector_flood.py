"""A flood from one sender does not starve honest vehicles (a real mosquitto, the real
Ingestor and SQLite store): one client publishes junk as fast as it can, an honest agent
publishes its batches meanwhile, and they are acknowledged end to end within a bound far
below the agent's 60 s resend time, while the flood is counted and dropped before any
database work."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from cloud_collector.intake import DROP_JUNK_BUDGET, DROP_SENDER_BUDGET
from cloud_collector.store import Store
from harness.collector import FLEET, publish_until_acked
from harness.mosquitto import MosquittoHarness
from tests.support.ingest_run import collector

pytestmark = pytest.mark.integration
FLOOD = 19_200  # messages from the flooding client (a multiple of CONCURRENCY)
HONEST_AFTER = 12_800  # the honest agent starts once this many are out
CONCURRENCY = 64  # publishes in flight at the flooder
# The honest batches must be acknowledged before their first resend (60 s) would be due;
# half of that leaves room for a loaded test machine (they took 1.6-8.5 s here).
ACK_BOUND_S = 30.0


# The flooding client, a process of its own as it would be: publishes FLOOD junk messages
# (QoS 1, CONCURRENCY in flight), prints a line when HONEST_AFTER are out, and its rate.
_FLOODER = """
import asyncio, sys, time
import aiomqtt

port, topic, total, concurrency, mark = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])

async def main() -> None:
    sent = 0
    t0 = time.monotonic()
    async with aiomqtt.Client(
        "127.0.0.1", int(port), identifier="flooder", protocol=aiomqtt.ProtocolVersion.V5,
        max_inflight_messages=concurrency,
    ) as c:
        async def worker(n: int) -> None:
            nonlocal sent
            for _ in range(n):
                await c.publish(topic, b"\\xc1" + bytes(511), qos=1)
                sent += 1
                if sent == mark:
                    print("started", flush=True)
        await asyncio.gather(*(worker(total // concurrency) for _ in range(concurrency)))
    print(f"rate {sent / (time.monotonic() - t0):.0f}", flush=True)

asyncio.run(main())
"""


async def start_flood(port: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", _FLOODER, str(port), f"fleet/{FLEET}/flooder/batch",
        str(FLOOD), str(CONCURRENCY), str(HONEST_AFTER), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def test_flood_from_one_sender_does_not_starve_honest(
    broker: MosquittoHarness, store: Store
) -> None:
    async with collector(broker, store) as run:
        flooder = await start_flood(broker.port)
        assert flooder.stdout is not None
        try:
            line = await asyncio.wait_for(flooder.stdout.readline(), 60)
            assert line == b"started\n", line
        except BaseException:
            flooder.kill()
            await flooder.wait()
            raise
        t0 = time.monotonic()
        items = [("taxi-honest", 9, s) for s in range(1, 6)]
        tracker = await publish_until_acked(
            broker.port, items, timeout_s=ACK_BOUND_S + 10, resend_after_s=60
        )
        took = time.monotonic() - t0
        last, _ = await asyncio.wait_for(flooder.communicate(), 120)
        rate = float(last.split()[-1])
        assert tracker.acked.get(("taxi-honest", 9), 0) == 5, (took, rate)
        assert took < ACK_BOUND_S, (took, rate)
        print(f"honest acked in {took:.2f} s during a flood of {rate:.0f} msg/s")
        assert rate > 1_000  # it really was a flood

        async def flood_handled() -> bool:
            m = run.metrics
            return sum(m.quarantined.values()) + sum(m.dropped.values()) >= FLOOD

        await run.wait_for(flood_handled, timeout_s=30)
        # Most of the flood never reached the database: beyond the sender's budget it was
        # not even decoded, beyond its junk budget not written.
        assert run.metrics.dropped[DROP_SENDER_BUDGET] > FLOOD // 2
        assert run.metrics.dropped[DROP_JUNK_BUDGET] > 0
        assert sum(run.metrics.quarantined.values()) < FLOOD // 10
