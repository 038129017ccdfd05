"""The uplink: pure backoff/rate policies, the delivery loop against a fake link, and the
aiomqtt adapter against a real mosquitto and the test consumer."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import aiomqtt
import pytest

from edge_agent.backoff import LinkRate, TokenBucket
from edge_agent.config import MqttConfig
from edge_agent.errors import ConfigError
from edge_agent.outbox import Outbox, Records
from edge_agent.uplink import (
    IDLE_POLL_S,
    Uplink,
    tls_context,
)
from harness import consumer
from harness.faults.proxy import LinkProxy
from harness.mosquitto import MosquittoHarness, free_port
from protocol import Ack, Presence, decode_status, status_topic
from protocol.records import Event, SignalSeries
from tests.support.scripted_link import ScriptedLink, connector_for, until, uplink_settings

FLEET, VEHICLE = "test-fleet", "taxi-1"
T0 = 1_760_000_000_000

# -- pure policies -------------------------------------------------------------------------


def test_token_bucket_allows_a_burst_then_paces() -> None:
    bucket = TokenBucket(rate=1000.0, burst=2000.0, now=0.0)
    assert bucket.reserve(1500, 0.0) == 0.0
    assert bucket.reserve(500, 0.0) == 0.0
    assert bucket.reserve(1000, 0.0) == pytest.approx(1.0)  # one second of rate
    assert bucket.reserve(1000, 1.0) == pytest.approx(1.0)  # the debt carried over
    assert bucket.reserve(0, 10.0) == 0.0  # refilled, but never above the burst
    assert bucket.tokens == pytest.approx(2000.0)


def test_token_bucket_sends_a_batch_bigger_than_the_burst() -> None:
    bucket = TokenBucket(rate=100.0, burst=50.0, now=0.0)
    assert bucket.reserve(250, 0.0) == pytest.approx(2.0)


def test_token_bucket_rate_zero_is_unlimited() -> None:
    bucket = TokenBucket(rate=0.0, burst=0.0, now=0.0)
    assert bucket.reserve(10**9, 0.0) == 0.0


def test_link_rate_is_bytes_acked_per_busy_second() -> None:
    rate = LinkRate(base_timeout_s=20.0, max_inflight=16)
    assert rate.rate() is None
    # Three 4 kB batches sent together on a 2 kB/s link: PUBACKs 2 s apart.
    rate.on_puback(4000, sent_at=0.0, now=2.1)  # the first also carries the round trip
    rate.on_puback(4000, sent_at=0.0, now=4.1)
    rate.on_puback(4000, sent_at=0.0, now=6.1)
    measured = rate.rate()
    assert measured is not None
    assert 1900 < measured < 2000
    # An idle minute, then one more batch: the gap is not busy time.
    rate.on_puback(4000, sent_at=66.1, now=68.1)
    assert rate.rate() == pytest.approx(measured, rel=0.05)


def test_resend_wait_grows_with_what_the_link_still_has_to_carry() -> None:
    """An urgent batch that overtook a 290 kB backlog on a 2 kB/s link is acknowledged
    only once the backlog arrived (acks are contiguous): it is not resent meanwhile."""
    rate = LinkRate(base_timeout_s=20.0, max_inflight=16)
    assert rate.resend_after_ms(60_000, 290_000) == 60_000  # not measured yet
    for i in range(5):
        rate.on_puback(4000, sent_at=i * 2.0, now=(i + 1) * 2.0)
    measured = rate.rate()
    assert measured is not None
    assert rate.resend_after_ms(60_000, 290_000) == 60_000 + round(290_000_000 / measured)
    assert 200_000 < rate.resend_after_ms(60_000, 290_000) < 215_000
    assert rate.resend_after_ms(60_000, 0) == 60_000


def test_link_rate_follows_a_link_that_gets_slower() -> None:
    rate = LinkRate(base_timeout_s=20.0, max_inflight=16)
    for i in range(10):
        rate.on_puback(4000, sent_at=i * 0.1, now=(i + 1) * 0.1)  # 40 kB/s
    for i in range(10):
        rate.on_puback(4000, sent_at=1.0 + i * 2, now=1.0 + (i + 1) * 2)  # 2 kB/s
    measured = rate.rate()
    assert measured is not None
    assert measured < 2500


def test_window_keeps_in_flight_what_the_link_delivers_in_a_share_of_the_timeout() -> None:
    rate = LinkRate(base_timeout_s=20.0, max_inflight=16, budget_share=0.25)
    sizes = [4000] * 71
    assert rate.window(sizes) == 1  # unmeasured: one batch finds out the rate
    assert rate.window([]) == 0
    for i in range(5):
        rate.on_puback(4000, sent_at=i * 2.0, now=(i + 1) * 2.0)  # 2 kB/s
    assert rate.budget_bytes() == pytest.approx(10_000)  # 5 s of the 20-s timeout
    assert rate.window(sizes) == 2
    assert rate.window([60_000, 100]) == 1  # at least one, even bigger than the budget
    fast = LinkRate(base_timeout_s=20.0, max_inflight=16)
    fast.on_puback(4000, sent_at=0.0, now=0.01)
    assert fast.window(sizes) == 16  # never more than max_inflight


def test_timeouts_grow_with_the_bytes_queued_ahead() -> None:
    rate = LinkRate(base_timeout_s=20.0, max_inflight=16)
    assert rate.timeout_s(64_000) == 20.0  # unmeasured: the configured timeout
    for i in range(5):
        rate.on_puback(2000, sent_at=float(i), now=float(i + 1))  # 2 kB/s
    assert rate.timeout_s(64_000) == pytest.approx(20.0 + 32.0)


def test_a_timeout_caps_the_rate_below_what_the_timeout_proves() -> None:
    rate = LinkRate(base_timeout_s=20.0, max_inflight=16)
    rate.on_puback(4000, sent_at=0.0, now=0.05)  # looked fast
    rate.on_timeout(bytes_ahead=64_000, waited_s=20.0)  # but 64 kB did not pass in 20 s
    measured = rate.rate()
    assert measured is not None
    assert measured <= 1600
    assert rate.timeout_s(64_000) >= 60.0  # the next try waits long enough


def test_link_rate_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="link rate"):
        LinkRate(base_timeout_s=0.0, max_inflight=1)
    with pytest.raises(ValueError, match="link rate"):
        LinkRate(base_timeout_s=1.0, max_inflight=1, budget_share=0.0)


# -- TLS configuration ---------------------------------------------------------------------


def test_tls_missing_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.tls_ca.*file not found"):
        tls_context(MqttConfig(tls_ca="nope/ca.pem"), tmp_path)
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"mqtt\.tls_ca"):
        tls_context(MqttConfig(tls_ca="ca.pem"), tmp_path)
    with pytest.raises(ConfigError, match=r"mqtt\.tls_cert.*file not found"):
        tls_context(MqttConfig(tls_ca=str(tmp_path / "ca.pem"), tls_cert="c.pem"), tmp_path)


def test_no_tls_configured_means_plain_tcp(tmp_path: Path) -> None:
    assert tls_context(MqttConfig(), tmp_path) is None


# -- delivery loop against a fake link -----------------------------------------------------


def _signals(i: int) -> Records:
    return Records(signals=(SignalSeries("WHL_SPD11.WHL_SPD_FL", (T0 + i,), (float(i),)),))


async def _bulk_batches(outbox: Outbox, n: int) -> None:
    for i in range(n):
        await outbox.append(_signals(i), T0 + i * 1000)
        await outbox.close_due_batches(T0 + i * 1000, force=True)


async def test_an_urgent_event_overtakes_the_backlog(tmp_path: Path) -> None:
    outbox = await Outbox.open(tmp_path / "o.db", fleet_id=FLEET, vehicle_id=VEHICLE)
    await _bulk_batches(outbox, 40)
    link = ScriptedLink(delay_s=0.01)
    uplink = Uplink(uplink_settings(max_inflight=4), outbox, connector=connector_for(link))  # type: ignore[arg-type]
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(uplink.run(stop))
        await until(lambda: len(link.published) >= 8, 5)
        event = Event("fcw", T0 + 50_000, 50.0, None, None, {})
        await outbox.append(Records(events=(event,)), T0 + 50_000)
        await outbox.close_due_batches(T0 + 50_000, force=True)
        uplink.wake()
        await until(lambda: any(ch == "event" for ch, _ in link.published), 5)
        stop.set()
    position = next(i for i, (ch, _) in enumerate(link.published) if ch == "event")
    assert position < 20, link.published  # not behind the other 30 bulk batches
    await outbox.close()


async def test_unacked_batches_are_resent_and_acks_delete(tmp_path: Path) -> None:
    outbox = await Outbox.open(tmp_path / "o.db", fleet_id=FLEET, vehicle_id=VEHICLE)
    await _bulk_batches(outbox, 3)
    link = ScriptedLink()
    uplink = Uplink(uplink_settings(resend_after_ms=200), outbox, connector=connector_for(link))  # type: ignore[arg-type]
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(uplink.run(stop))
        await until(lambda: len(link.published) >= 6, 5)  # every batch sent twice
        assert uplink.counters.resent >= 3
        await link.ack_queue.put(Ack(vehicle_id=VEHICLE, epoch=outbox.epoch, seq=3, time_ms=T0))
        await until(lambda: uplink.counters.acked_batches == 3, 5)
        stop.set()
    assert (await outbox.stats(T0)).pending_batches == 0
    await outbox.close()


async def test_a_broken_link_reconnects_and_loses_nothing(tmp_path: Path) -> None:
    outbox = await Outbox.open(tmp_path / "o.db", fleet_id=FLEET, vehicle_id=VEHICLE)
    await _bulk_batches(outbox, 10)
    link = ScriptedLink()
    link.fail_after = 3
    uplink = Uplink(uplink_settings(max_inflight=2), outbox, connector=connector_for(link))  # type: ignore[arg-type]
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(uplink.run(stop))
        await until(lambda: uplink.counters.disconnects >= 1, 5)
        link.fail_after = None
        await until(lambda: {s for _, s in link.published} == set(range(1, 11)), 5)
        stop.set()
    assert uplink.counters.connects >= 2
    await outbox.close()


class CountingOutbox:
    """The real outbox, counting the publisher's queries."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.queries = 0

    async def due_for_publish(self, *, limit: int, resend_after_ms: int) -> list[object]:
        self.queries += 1
        return list(await self.outbox.due_for_publish(limit=limit, resend_after_ms=resend_after_ms))

    async def mark_published(self, batches: list[tuple[int, int]]) -> None:
        await self.outbox.mark_published(batches)

    async def acknowledge(self, epoch: int, upto_seq: int) -> int:
        return await self.outbox.acknowledge(epoch, upto_seq)

    async def unpublished_bytes(self) -> int:
        return await self.outbox.unpublished_bytes()


async def test_an_idle_publisher_waits_for_the_resend_it_knows_not_a_poll(tmp_path: Path) -> None:
    """The resend comes when it is due (0.3 s), far before the idle fallback (5 s); once
    everything is acknowledged the publisher waits for a wake-up instead of polling."""
    assert IDLE_POLL_S >= 5.0
    outbox = await Outbox.open(tmp_path / "o.db", fleet_id=FLEET, vehicle_id=VEHICLE)
    await _bulk_batches(outbox, 2)
    counting = CountingOutbox(outbox)
    link = ScriptedLink()
    uplink = Uplink(uplink_settings(resend_after_ms=300), counting, connector=connector_for(link))  # type: ignore[arg-type]
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(uplink.run(stop))
        await until(lambda: len(link.published) >= 4, 2.5)  # each batch resent once, on time
        await link.ack_queue.put(Ack(vehicle_id=VEHICLE, epoch=outbox.epoch, seq=2, time_ms=T0))
        await until(lambda: uplink.counters.acked_batches == 2 and uplink.idle.is_set(), 5)
        assert uplink._idle_wait_s(300) == IDLE_POLL_S  # nothing left to resend
        # A batch closed meanwhile is published as soon as the closer wakes the uplink.
        queries = counting.queries
        await _bulk_batches(outbox, 1)
        uplink.wake()
        await until(lambda: len(link.published) >= 5, 2.5)
        assert counting.queries - queries <= 2  # the woken round (and its idle look)
        stop.set()
    await outbox.close()


async def test_idle_wait_forgets_batches_that_are_gone() -> None:
    """A resend that would be due already but was not in the outbox's answer belongs to a
    batch that is gone: it is dropped, never waited on with a zero timeout."""
    now = [100.0]
    box = CountingOutbox(None)  # type: ignore[arg-type]
    uplink = Uplink(uplink_settings(), box, monotonic=lambda: now[0])  # type: ignore[arg-type]
    uplink._note_marked([(1, 1), (1, 2)])
    now[0] = 100.2
    uplink._note_marked([(1, 3)])
    now[0] = 100.5
    assert uplink._idle_wait_s(1_000) == pytest.approx(0.5)
    now[0] = 101.1  # seqs 1 and 2 would be due: gone, since the outbox had nothing
    assert uplink._idle_wait_s(1_000) == pytest.approx(0.1)
    uplink._forget_marked(1, 3)  # acknowledged
    assert uplink._idle_wait_s(1_000) == IDLE_POLL_S


# -- the real thing ------------------------------------------------------------------------


async def _retained_status(port: int) -> Presence:
    async with aiomqtt.Client("127.0.0.1", port, identifier="status-probe") as client:
        await client.subscribe(status_topic(FLEET, VEHICLE), qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                return decode_status(message.payload).state
    raise AssertionError("no status")


@pytest.mark.integration
async def test_delivery_end_to_end_through_mosquitto(tmp_path: Path) -> None:
    with MosquittoHarness(tmp_path) as broker:
        proc = await asyncio.to_thread(consumer.spawn, broker.port, tmp_path / "c.db")
        try:
            outbox = await Outbox.open(tmp_path / "o.db", fleet_id=FLEET, vehicle_id=VEHICLE)
            await _bulk_batches(outbox, 20)
            uplink = Uplink(uplink_settings(broker.port), outbox)
            stop = asyncio.Event()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(uplink.run(stop))
                await until(lambda: uplink.counters.acked_batches == 20, 15)
                assert await _retained_status(broker.port) is Presence.ONLINE
                stop.set()
            assert await _retained_status(broker.port) is Presence.OFFLINE
            assert (await outbox.stats(T0)).pending_batches == 0
            await outbox.close()
        finally:
            consumer.stop(proc)
    results = consumer.load_results(tmp_path / "c.db")
    assert len(results.receipts) == 20
    assert sum(results.samples.values()) == 20


@pytest.mark.integration
async def test_unreachable_broker_keeps_retrying_and_keeps_data(tmp_path: Path) -> None:
    outbox = await Outbox.open(tmp_path / "o.db", fleet_id=FLEET, vehicle_id=VEHICLE)
    await _bulk_batches(outbox, 2)
    uplink = Uplink(uplink_settings(free_port(), connect_timeout_s=1.0), outbox)
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(uplink.run(stop))
        await until(lambda: uplink.counters.connect_failures >= 3, 10)
        stop.set()
    assert (await outbox.stats(T0)).pending_batches == 2
    await outbox.close()


async def _noisy_batches(outbox: Outbox, n: int, samples: int) -> int:
    """``n`` bulk batches of random samples (zstd cannot shrink them); their total bytes."""
    rng = random.Random(12)
    for i in range(n):
        times = tuple(T0 + i * 10_000 + k for k in range(samples))
        values = tuple(rng.random() for _ in range(samples))
        series = SignalSeries("WHL_SPD11.WHL_SPD_FL", times, values)
        await outbox.append(Records(signals=(series,)), T0 + i * 10_000)
        await outbox.close_due_batches(T0 + i * 10_000, force=True)
    due = await outbox.due_for_publish(limit=n + 1, resend_after_ms=60_000)
    assert len(due) == n
    return sum(len(b.payload) for b in due)


@pytest.mark.integration
async def test_backlog_over_a_2_kbyte_per_s_link_is_sent_once(tmp_path: Path) -> None:
    """A backlog larger than the link delivers within a publish timeout: the in-flight
    window and the timeouts follow the measured rate, so nothing times out, nothing is
    sent twice, and the bytes on the link stay close to the backlog's size."""
    rate = 2048
    with MosquittoHarness(tmp_path) as broker:
        proc = await asyncio.to_thread(consumer.spawn, broker.port, tmp_path / "c.db")
        try:
            outbox = await Outbox.open(tmp_path / "o.db", fleet_id=FLEET, vehicle_id=VEHICLE)
            backlog = await _noisy_batches(outbox, 10, samples=300)
            with LinkProxy(broker.port) as proxy:
                proxy.set(rate_bytes_per_s=rate)
                # The shipped defaults scaled down 4x in time (20 s -> 5 s, 16 in flight),
                # as the backlog is (~30 kB instead of a 2-hour backlog).
                settings = uplink_settings(proxy.port, publish_timeout_s=5.0, max_inflight=16)
                uplink = Uplink(settings, outbox)
                stop = asyncio.Event()
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(uplink.run(stop))
                    await until(lambda: uplink.counters.acked_batches == 10, 45)
                    stop.set()
                sent = proxy.counters.bytes_up
            await outbox.close()
        finally:
            consumer.stop(proc)
    results = consumer.load_results(tmp_path / "c.db")
    assert len(results.receipts) == 10
    figures = {
        "duplicates": results.duplicates,
        "disconnects": uplink.counters.disconnects,
        "bytes_up": sent,
        "backlog_bytes": backlog,
    }
    assert results.duplicates == 0, figures
    assert uplink.counters.disconnects == 0, figures  # no publish timed out
    # MQTT framing, the connect and the status messages add a few %; nothing is sent twice.
    assert sent < backlog * 1.05, figures
