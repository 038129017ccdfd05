"""A simulated power cut ends the MQTT session as a real one does: the TCP connection is
gone without a DISCONNECT, so the broker publishes the taxi's will (real mosquitto)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from edge_agent.uplink import UplinkSettings
from fleet_sim.model import TaxiModel
from fleet_sim.taxi import Counts, Outage, SimClock, Taxi
from fleet_sim.truth import Plan, generate
from harness.mosquitto import MosquittoHarness
from protocol import Presence, decode_status, status_topic
from tests.support.scripted_link import until

START_MS = 1_764_540_000_000
FLEET, VEHICLE = "daegu", "t0000"


def _taxi(tmp_path: Path, port: int) -> Taxi:
    truth = generate(Plan(seed=7, taxis=1, hours=0.25, start_ms=START_MS, hazard_factor=50))
    clock = SimClock(time.time(), 1.0, 900)
    settings = UplinkSettings(
        fleet_id=FLEET, vehicle_id=VEHICLE, host="127.0.0.1", port=port, reconnect_min_s=5.0
    )
    return Taxi(
        0, TaxiModel(truth, 0), settings, clock, Outage(None, clock), tmp_path / "o.db", Counts()
    )


async def _next_state(messages: AsyncIterator[aiomqtt.Message]) -> Presence:
    async with asyncio.timeout(10):
        message = await anext(messages)
    assert isinstance(message.payload, bytes)
    return decode_status(message.payload).state


@pytest.mark.integration
async def test_a_power_cut_leaves_the_will_to_the_broker(tmp_path: Path) -> None:
    with MosquittoHarness(tmp_path) as broker:
        taxi = _taxi(tmp_path, broker.port)
        session = await taxi._open()
        await until(lambda: session.online, 10)
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="status-probe") as probe:
            await probe.subscribe(status_topic(FLEET, VEHICLE), qos=1)
            messages = aiter(probe.messages)
            assert await _next_state(messages) is Presence.ONLINE  # retained
            await session.cut_power()
            # The cut itself publishes nothing: an OFFLINE now is the broker's will.
            assert await _next_state(messages) is Presence.OFFLINE
        assert session.tasks
        assert all(t.done() for t in session.tasks)
        assert session.slot.link is None
        client = taxi.settings.client_id
        await until(lambda: f"Client {client} closed its connection." in broker.log_text(), 10)
        assert f"Client {client} disconnected." not in broker.log_text()


@pytest.mark.integration
async def test_an_ignition_off_still_says_goodbye(tmp_path: Path) -> None:
    """The clean stop publishes OFFLINE itself and disconnects: the broker logs a clean
    disconnect, not a connection that died."""
    with MosquittoHarness(tmp_path) as broker:
        taxi = _taxi(tmp_path, broker.port)
        session = await taxi._open()
        await until(lambda: session.online, 10)
        session.stop.set()
        await asyncio.gather(*session.tasks)
        await session.outbox.close()
        client = taxi.settings.client_id
        await until(lambda: f"Client {client} disconnected." in broker.log_text(), 10)
        assert f"Client {client} closed its connection." not in broker.log_text()
