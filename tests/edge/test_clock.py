"""A gateway whose wall clock is wrong: the clamping core, and ``edge-agent run`` as a real
process under libfaketime (Debian ``faketime``) against a real mosquitto."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from edge_agent.clock import (
    PLAUSIBLE_FROM_MS,
    clamp_records,
    clamp_time_ms,
    clock_invalid,
)
from edge_agent.outbox import Records
from harness import consumer
from harness.agent import ROOT, agent_cmd, setup, status
from harness.mosquitto import MosquittoHarness
from protocol import Status, decode_status, status_topic
from protocol.contracts import CLOCK_INVALID
from protocol.limits import MAX_TIME_MS
from protocol.records import Event, GnssFix, Health, RawFrame, SignalSeries

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")

# -- the pure part -------------------------------------------------------------------------


def test_times_are_clamped_into_the_wire_range() -> None:
    assert clamp_time_ms(-3_600_000) == 0
    assert clamp_time_ms(2**63) == MAX_TIME_MS
    assert clamp_time_ms(PLAUSIBLE_FROM_MS) == PLAUSIBLE_FROM_MS


def test_a_clock_before_2024_or_past_the_wire_range_is_invalid() -> None:
    assert clock_invalid(-1)
    assert clock_invalid(0)
    assert clock_invalid(PLAUSIBLE_FROM_MS - 1)
    assert not clock_invalid(PLAUSIBLE_FROM_MS)
    assert clock_invalid(MAX_TIME_MS + 1)


def test_records_stamped_before_1970_are_kept_at_time_zero() -> None:
    fix = GnssFix(-5, 37.5, 127.0, 3)
    records = Records(
        events=(Event("fcw", -1000, 30.0, fix, None, {}),),
        signals=(SignalSeries("s", (-2000, -1000, 5), (1.0, 2.0, 3.0)),),
        gnss=(fix,),
        frames=(RawFrame("camera", -7, 0x700, b"\x00"),),
        health=(Health(-3, {"x": 1}),),
    )
    out = clamp_records(records)
    assert out.events[0].time_ms == 0
    assert out.events[0].fix is not None
    assert out.events[0].fix.time_ms == 0
    assert out.events[0].speed_kmh == 30.0
    assert out.signals[0].times_ms == (0, 0, 5)
    assert out.signals[0].values == (1.0, 2.0, 3.0)
    assert out.gnss[0].time_ms == 0
    assert out.gnss[0].lat == 37.5
    assert out.frames[0].time_us == 0
    assert out.health[0].time_ms == 0
    assert out.health[0].values == {"x": 1}


def test_records_in_range_are_passed_through_untouched() -> None:
    records = Records(signals=(SignalSeries("s", (1, 2), (1.0, 2.0)),))
    assert clamp_records(records) is records


def test_evidence_links_are_clamped_with_their_event() -> None:
    event = Event("fcw", -40, None, None, None)
    linked = RawFrame("camera", -45_000, 0x700, bytes(8), event_ms=-40)
    out = clamp_records(Records(events=(event,), frames=(linked,)))
    assert out.frames[0].event_ms == out.events[0].time_ms == 0
    records = Records(frames=(RawFrame("camera", 5_000, 0x700, b"", event_ms=-1),))
    assert clamp_records(records).frames[0].event_ms == 0


# -- a real agent under a wrong clock ------------------------------------------------------


def _retained_status(port: int) -> Status:
    async def probe() -> Status:
        async with aiomqtt.Client("127.0.0.1", port, identifier="clock-probe") as client:
            await client.subscribe(status_topic("test-fleet", "taxi-7"), qos=1)
            async with asyncio.timeout(5):
                async for message in client.messages:
                    assert isinstance(message.payload, bytes)
                    return decode_status(message.payload)
        raise AssertionError("no retained status")

    return asyncio.run(probe())


def _health(s: object) -> dict[str, object] | None:
    health = status(s)["health"]  # type: ignore[arg-type]
    return health if isinstance(health, dict) else None


@pytest.mark.integration
@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="Debian package faketime not installed")
@pytest.mark.parametrize(
    ("clock", "invalid"),
    [("1969-12-31 23:00:00", True), ("2200-01-01 00:00:00", False)],
)
def test_run_keeps_running_under_a_wrong_wall_clock(
    tmp_path: Path, clock: str, invalid: bool
) -> None:
    fake_ms = round(datetime.fromisoformat(clock).replace(tzinfo=UTC).timestamp() * 1000)
    env = {
        **os.environ,
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME": f"@{clock}",
        # A real gateway's monotonic clock counts from boot whatever its RTC says.
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    with MosquittoHarness(tmp_path) as broker:
        s = setup(tmp_path, broker.port)
        proc = consumer.spawn(broker.port, s.db)
        agent = subprocess.Popen(agent_cmd(s, "run"), cwd=ROOT, env=env, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 20
            while agent.poll() is None and time.monotonic() < deadline:
                if s.dir.joinpath("outbox.sqlite3").exists() and _health(s) is not None:
                    break
                time.sleep(0.3)
            assert agent.poll() is None, agent.communicate(timeout=10)[1].decode()[-3000:]
            announced = _retained_status(broker.port)
            # The clock ran on from the faked start: stamps are that clock, clamped.
            assert abs(announced.time_ms - clamp_time_ms(fake_ms)) < 60_000
            # Records flow under this clock: wait (bounded) for the first bulk batch to be
            # stored, rather than a fixed time a loaded machine may not give the agent.
            deadline = time.monotonic() + 40
            while not consumer.load_results(s.db).samples and time.monotonic() < deadline:
                time.sleep(0.5)
            os.kill(agent.pid, signal.SIGTERM)
            _, err = agent.communicate(timeout=30)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait(10)
            consumer.stop(proc)
    assert agent.returncode == 0, err.decode()[-3000:]
    assert "Traceback" not in err.decode()
    health = _health(s)
    assert health is not None
    values = health["values"]
    assert isinstance(values, dict)
    assert values[CLOCK_INVALID] is invalid
    stamped = health["time_ms"]
    assert isinstance(stamped, int)
    assert abs(stamped - clamp_time_ms(fake_ms)) < 60_000
    assert consumer.load_results(s.db).samples, "records kept flowing"
