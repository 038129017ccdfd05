"""Fixed batches, acks and statuses behind the golden vectors and the PROTOCOL.md example.

Changing anything here changes the golden vectors: regenerate them with
``python -m tests.protocol.make_golden`` and review the diff.
"""

from __future__ import annotations

from protocol import (
    Ack,
    Batch,
    Event,
    FrameRef,
    GnssFix,
    Health,
    Presence,
    RawFrame,
    SignalSeries,
    Status,
)

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def minimal_batch() -> Batch:
    """The worked example of PROTOCOL.md: one signal with three samples."""
    return Batch.build(
        fleet_id="demo",
        vehicle_id="taxi-001",
        epoch=0x0123456789ABCDEF,
        seq=7,
        sent_ms=T0 + 1500,
        signals=[SignalSeries("speed", (T0, T0 + 100, T0 + 200), (42.5, 43, None), "km/h")],
    )


def full_batch() -> Batch:
    """Every record kind, with optional fields both present and absent."""
    fix = GnssFix(T0 - 400, 52.520008, 13.404954, 3, 34.5, 8.25, 271.5, -12)
    return Batch.build(
        fleet_id="berlin-north",
        vehicle_id="B-TX-4711",
        epoch=2**64 - 1,
        seq=123_456,
        sent_ms=T0 + 61_000,
        signals=[
            SignalSeries(
                "vehicle_speed",
                tuple(T0 + 20 * i for i in range(8)),
                (0.0, 0.5, 1.25, 2.0, None, 3.5, -0.0, 1e-9),
                "km/h",
            ),
            SignalSeries("gear", (T0 + 5, T0 + 60_000), (3, -1)),
        ],
        events=[
            Event(
                type="fcw",
                time_ms=T0 + 30_000,
                speed_kmh=48.75,
                fix=fix,
                source=FrameRef("can0", 0x700),
                attrs={
                    "urban": True,
                    "sound": "fcw_urban",
                    "sound_code": 4,
                    "headway_s": 0.8,
                    "level": None,
                    "delta": -(2**63),
                },
            ),
            Event("camera_tamper", T0 + 30_001, None, None, None),
        ],
        gnss=[
            GnssFix(T0, 52.52, 13.405, 3, 35.0, 8.0, 270.0, -10),
            GnssFix(T0 + 1000, -33.8688, 151.2093, 2),
            GnssFix(T0 + 2000, 0, -180, 1, None, 0, 360, 2**53 - 1),
        ],
        frames=[
            RawFrame("can0", (T0 + 30_000) * 1000 - 1500, 0x700, bytes.fromhex("0102030405060708")),
            RawFrame("can1", (T0 + 30_000) * 1000 + 999, 0x18FF50E5, b"", extended=True),
        ],
        health=[
            Health(
                T0 + 60_000,
                {
                    "outbox_batches": 12,
                    "cpu_load": 0.42,
                    "agent": "1.0.0",
                    "can0_up": True,
                    "last_error": None,
                },
            ),
        ],
    )


def ack() -> Ack:
    return Ack(vehicle_id="taxi-001", epoch=0x0123456789ABCDEF, seq=7, time_ms=T0 + 2500)


def status_online() -> Status:
    return Status(state=Presence.ONLINE, time_ms=T0)


def status_offline() -> Status:
    return Status(state=Presence.OFFLINE, time_ms=T0)


def evidence_batch() -> Batch:
    """Schema 2: raw frames linked to the event they are evidence for (``frm.ev``), next to
    one linked to no event. The linked event itself travels in another batch."""
    event_ms = T0 + 30_000
    return Batch.build(
        fleet_id="demo",
        vehicle_id="taxi-001",
        epoch=0x0123456789ABCDEF,
        seq=8,
        sent_ms=T0 + 33_000,
        frames=[
            RawFrame("camera", (event_ms - 80) * 1000 + 250, 0x700, bytes(8), event_ms=event_ms),
            RawFrame(
                "camera", event_ms * 1000, 0x700, bytes.fromhex("00000000110000"), event_ms=event_ms
            ),
            RawFrame("vehicle", event_ms * 1000 + 500, 0x386, bytes.fromhex("00112233")),
        ],
    )
