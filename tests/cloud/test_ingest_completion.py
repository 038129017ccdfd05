"""The ingest's ordered completion against in-memory fakes of its two ports.

Checked on every run, from the journal of what happened in which order:
- a message's PUBACK comes after its batch's commit, and PUBACKs follow arrival order;
- an end-to-end ack for seq s goes out only once 1..s of that epoch are committed;
- nothing is stored twice, and everything sent ends up stored and acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from cloud_collector.completion import AckIntent, AckSender, OrderedCompletion
from cloud_collector.config import MqttConfig
from cloud_collector.delivery import Delivered
from cloud_collector.ingest import Ingestor
from cloud_collector.metrics import IngestMetrics
from protocol import Batch, Event, batch_topic, decode_ack, encode_batch, peek_identity
from tests.support.delivery import FakeBroker
from tests.support.ingest_store import FakeLedger, Key

FLEET = "fake"
VEHICLE = "taxi-1"
EPOCH = 77
T0 = 1_772_436_600_000


def batch_payload(seq: int) -> bytes:
    batch = Batch.build(
        fleet_id=FLEET, vehicle_id=VEHICLE, epoch=EPOCH, seq=seq, sent_ms=T0 + seq * 1000,
        events=[Event("fcw", T0 + seq * 1000 - 500, 40.0, None, None, {})],
    )  # fmt: skip
    return encode_batch(batch)


def key(seq: int) -> Key:
    return (VEHICLE, EPOCH, seq)


@dataclass
class Rig:
    broker: FakeBroker
    ledger: FakeLedger
    metrics: IngestMetrics
    journal: list[tuple[object, ...]]

    def send(self, *seqs: int) -> None:
        for seq in seqs:
            self.broker.send(batch_topic(FLEET, VEHICLE), batch_payload(seq))

    def pubacks_per_session(self) -> list[list[int]]:
        sessions: list[list[int]] = []
        for entry in self.journal:
            if entry[0] == "connect":
                sessions.append([])
            elif entry[0] == "puback":
                data = entry[2]
                assert isinstance(data, bytes)
                sessions[-1].append(peek_identity(data).seq)
        return sessions

    def commits_per_session(self) -> list[int]:
        counts: list[int] = []
        for entry in self.journal:
            if entry[0] == "connect":
                counts.append(0)
            elif entry[0] == "commit":
                counts[-1] += 1
        return counts

    def acked_seqs(self) -> list[int]:
        return [decode_ack(p.payload).seq for p in self.broker.published]

    async def until(self, check: Callable[[], bool], timeout_s: float = 5.0) -> None:
        for _ in range(int(timeout_s / 0.001)):
            if check():
                return
            await asyncio.sleep(0.001)
        raise AssertionError("condition not reached in time")

    async def settle(self) -> None:
        """Let every runnable task run until nothing changes any more."""
        for _ in range(50):
            await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def running(*, concurrency: int = 4) -> AsyncIterator[Rig]:
    journal: list[tuple[object, ...]] = []
    rig = Rig(FakeBroker(journal=journal), FakeLedger(journal), IngestMetrics(), journal)
    cfg = MqttConfig(
        group="t", client_id="c", ingest_concurrency=concurrency,
        reconnect_min_s=0.001, reconnect_max_s=0.002,
    )  # fmt: skip
    ingestor = Ingestor(cfg, rig.ledger, rig.metrics, delivery=rig.broker, clock_ms=lambda: T0)
    stop = asyncio.Event()
    task = asyncio.create_task(ingestor.run(stop))
    try:
        yield rig
    finally:
        rig.ledger.release(*rig.ledger.hold)  # a failed test must not hang the shutdown
        stop.set()
        await asyncio.wait_for(task, 5)
    check_journal(rig)


def check_journal(rig: Rig) -> None:
    committed: set[int] = set()
    session: list[int] = []
    for entry in rig.journal:
        match entry:
            case ("connect", _):
                session = []
            case ("commit", _, _, int(seq)):
                committed.add(seq)
            case ("puback", _, bytes(data)):
                seq = peek_identity(data).seq
                assert seq in committed, f"PUBACK of seq {seq} before its commit"
                assert not session or seq > session[-1], f"PUBACK {seq} after {session}"
                session.append(seq)
            case ("publish", _, bytes(data)):
                ack = decode_ack(data)
                assert set(range(1, ack.seq + 1)) <= committed, (ack.seq, committed)
    assert len(rig.ledger.stored) == len(set(rig.ledger.stored)), rig.ledger.stored


async def test_out_of_order_completion_is_acknowledged_in_arrival_order() -> None:
    async with running(concurrency=4) as rig:
        rig.ledger.held(*(key(s) for s in (1, 2, 3, 4)))
        rig.send(1, 2, 3, 4)
        await rig.until(lambda: len(rig.broker.inflight) == 4)
        for seq in (4, 3, 2):
            rig.ledger.release(key(seq))
            await rig.settle()
        assert rig.ledger.stored == [key(4), key(3), key(2)]
        # Seq 1 is not stored yet: nothing is acknowledged, to the broker or the taxi.
        assert rig.broker.acked == []
        assert rig.broker.published == []
        rig.ledger.release(key(1))
        await rig.until(lambda: 4 in rig.acked_seqs())
        assert [peek_identity(m.payload).seq for m in rig.broker.acked] == [1, 2, 3, 4]
        assert rig.acked_seqs() == sorted(rig.acked_seqs())
    assert rig.metrics.stored["batch"] == 4


async def test_store_failure_mid_window_acknowledges_nothing_past_it() -> None:
    async with running(concurrency=4) as rig:
        rig.ledger.held(*(key(s) for s in range(1, 7)))
        rig.ledger.fail.add(key(3))
        rig.send(1, 2, 3, 4, 5, 6)
        await rig.until(lambda: len(rig.broker.inflight) >= 4)
        rig.ledger.release(key(1), key(2), key(4))
        await rig.until(lambda: len(rig.broker.acked) == 2)
        assert rig.ledger.stored == [key(1), key(2), key(4)]
        rig.ledger.release(key(3))  # its transaction fails: the session ends
        await rig.until(lambda: rig.broker.connects == 2)
        rig.ledger.release(key(5), key(6))
        await rig.until(lambda: 6 in rig.acked_seqs())
    # Stored but not acknowledged (4), and never stored (3, 5, 6): all redelivered.
    assert rig.pubacks_per_session() == [[1, 2], [3, 4, 5, 6]]
    assert sorted(rig.ledger.stored) == [key(s) for s in range(1, 7)]
    assert rig.metrics.store_errors == 1
    assert rig.metrics.duplicates["batch"] == 1  # seq 4, redelivered after its commit


async def test_transport_drop_mid_window_loses_nothing_and_stores_nothing_twice() -> None:
    async with running(concurrency=4) as rig:
        rig.ledger.held(*(key(s) for s in range(1, 6)))
        rig.send(1, 2, 3, 4, 5)
        await rig.until(lambda: len(rig.broker.inflight) >= 4)
        rig.ledger.release(key(1), key(2), key(4))
        await rig.until(lambda: len(rig.broker.acked) == 2)
        rig.broker.drop()
        await rig.until(lambda: rig.broker.connects == 2)
        rig.ledger.release(key(3), key(5))
        await rig.until(lambda: 5 in rig.acked_seqs())
    assert sorted(rig.ledger.stored) == [key(s) for s in range(1, 6)]
    assert rig.pubacks_per_session() == [[1, 2], [3, 4, 5]]
    assert rig.metrics.store_errors == 0


async def test_a_failed_puback_ends_the_session_and_the_redelivery_is_a_duplicate() -> None:
    async with running(concurrency=2) as rig:
        rig.broker.fail_next_ack = True
        rig.send(1, 2, 3)
        await rig.until(lambda: 3 in rig.acked_seqs())
        assert rig.broker.connects == 2
    assert sorted(rig.ledger.stored) == [key(1), key(2), key(3)]
    # The first PUBACK failed: whatever the first session stored comes again, a duplicate.
    assert rig.pubacks_per_session() == [[], [1, 2, 3]]
    first = rig.commits_per_session()[0]
    assert first >= 1
    assert rig.metrics.duplicates["batch"] == first


async def test_refused_connects_and_failed_ack_publishes_are_retried() -> None:
    async with running() as rig:
        rig.broker.refusals = 3
        rig.broker.fail_publish = True
        rig.send(1)
        await rig.until(lambda: rig.broker.connects >= 2)
        assert rig.acked_seqs() == []
        rig.broker.fail_publish = False
        # The batch was PUBACKed before its end-to-end ack failed: the agent, still
        # waiting for that ack, sends it again; a duplicate, acknowledged this time.
        rig.send(1)
        await rig.until(lambda: rig.acked_seqs() == [1])
    assert rig.ledger.stored == [key(1)]
    assert rig.metrics.duplicates["batch"] == 1
    assert rig.metrics.connects == rig.broker.connects == 2


async def test_a_message_not_admitted_is_acknowledged_in_its_place_without_processing() -> None:
    journal: list[tuple[object, ...]] = []
    broker = FakeBroker(journal=journal)
    processed: list[bytes] = []

    async def process(message: Delivered) -> AckIntent | None:
        await asyncio.sleep(0)
        processed.append(message.payload)
        return None

    stop = asyncio.Event()
    async with broker.connect(["f/#"]) as link:
        acks = AckSender(link, IngestMetrics(), lambda: T0, OrderedDict(), max_pending=8)
        completion = OrderedCompletion(
            link, acks, process=process, admit=lambda m: m.payload != b"2", concurrency=2
        )
        for n in range(1, 6):
            broker.send("f/x", str(n).encode())
        task = asyncio.create_task(completion.run(stop))
        for _ in range(5000):
            if len(broker.acked) == 5:
                break
            await asyncio.sleep(0.001)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert [s.payload for s in broker.acked] == [b"1", b"2", b"3", b"4", b"5"]
    assert processed == [b"1", b"3", b"4", b"5"]
    assert broker.published == []  # nothing stored: no end-to-end ack


async def test_a_clean_stop_leaves_the_group_and_a_lost_connection_does_not() -> None:
    async with running() as rig:
        rig.send(1)
        await rig.until(lambda: len(rig.ledger.stored) == 1)
        rig.broker.drop()
        await rig.until(lambda: rig.broker.connects == 2)
        assert ("leave",) not in rig.journal  # the session is kept for the reconnect
    assert rig.journal[-1] == ("leave",)  # ended at the broker after the stop
    assert rig.journal.count(("leave",)) == 1
