"""The health snapshot as a pure function of its inputs, against the contract's keys."""

from __future__ import annotations

from edge_agent import outbox
from edge_agent.evidence import Evidence, EvidenceSettings
from edge_agent.gnss import GpsdClient
from edge_agent.health import (
    AgentInfo,
    DiskInputs,
    Due,
    GnssInputs,
    HealthInputs,
    ProbeValues,
    health_values,
)
from edge_agent.outbox import OutboxStats
from edge_agent.pipeline import BusCounters
from edge_agent.uplink import UplinkCounters
from protocol.contracts import HEALTH_KEYS, INTEGRITY_KEYS


def contract_keys(bus: str) -> set[str]:
    """Every key of the contract (docs/health.md is generated from it), for one bus; keys
    templated on a gpsd reason appear only once that reason was seen, so they are left out."""
    return {k.name.replace("<name>", bus) for k in HEALTH_KEYS if "<reason>" not in k.name}


def inputs(**overrides: object) -> HealthInputs:
    base: dict[str, object] = {
        "reason": "interval",
        "uptime_s": 12.34,
        "info": AgentInfo("run", "1.2.3", "abcdef012345", 60.0),
        "outbox": OutboxStats(1, 9, 7, 2, 300, 1, 40, 4000, 1500, {"evicted_bulk": 3}),
        "disk": DiskInputs(1 << 20, False, 0, 0, 0),
        "uplink": UplinkCounters(connects=3, published=8, published_bytes=900),
        "uplink_connected": True,
        "bytes_sent_today": 900,
        "buses": {"camera": BusCounters(decoded=90, unknown_id=5, decode_errors=2)},
        "source_dropped": {"camera": 11},
        "malformed_lines": 4,
        "due": Due(
            "interval",
            60.0,
            {"bus_camera_frames": 1.5, "cpu_s": 0.0912},
            {"bus_camera_active": True, "gnss_fix": True, "clock_invalid": False},
        ),
        "gnss": GnssInputs(3, None, {}),
        "camera_failsafe": False,
        "camera_tamper": None,
        "probe": ProbeValues(cpu_s=5.4321, rss_bytes=50_000_000, disk_free_bytes=10**9),
    }
    return HealthInputs(**{**base, **overrides})  # type: ignore[arg-type]


def test_the_snapshot_has_exactly_the_contract_keys() -> None:
    gpsd_stats = GpsdClient("127.0.0.1", 1).stats()  # without gpsd: these are absent
    assert set(health_values(inputs())) == contract_keys("camera") - set(gpsd_stats)
    with_gpsd = inputs(gnss=GnssInputs(3, 12, dict(gpsd_stats)))
    assert set(health_values(with_gpsd)) == contract_keys("camera")


def test_values_come_from_the_inputs_only() -> None:
    values = health_values(inputs())
    assert values == health_values(inputs())  # nothing read from the system
    assert values["uptime_s"] == 12.3
    assert values["cpu_s"] == 5.43
    assert values["cpu_pct"] == 9.1
    assert values["reconnects"] == 2
    assert values["bus_camera_frames"] == 97
    assert values["bus_camera_fps"] == 1.5
    assert values["evicted_bulk"] == 3
    assert values["evicted_event"] == 0
    assert values["gnss_fix"] is True


def test_queue_drops_and_malformed_lines_are_reported() -> None:
    values = health_values(inputs())
    assert values["bus_camera_dropped"] == 11
    assert values["source_dropped_frames"] == 11
    assert values["replay_malformed_lines"] == 4


def test_integrity_keys_are_the_outbox_counters() -> None:
    assert INTEGRITY_KEYS == outbox.INTEGRITY_COUNTERS


def test_evidence_keys_follow_the_evidence_counters() -> None:
    off = health_values(inputs())
    assert off["evidence_day_cap_bytes"] is None
    assert off["evidence_events"] == 0
    evidence = Evidence(EvidenceSettings(day_cap_bytes=1000), lambda _type: True)
    evidence.stats.bytes_today, evidence.stats.events = 640, 2
    evidence.stats.dropped_events, evidence.stats.dropped_bytes = 3, 900
    evidence.ring("camera").push(0, 0x700, False, bytes(8))
    on = health_values(inputs(evidence=evidence))
    assert on["evidence_day_cap_bytes"] == 1000
    assert on["evidence_bytes_today"] == 640
    assert on["evidence_events"] == 2
    assert on["evidence_dropped_events"] == 3
    assert on["evidence_dropped_bytes"] == 900
    assert on["evidence_ring_bytes"] == evidence.ring("camera").used > 0
    assert set(on) == set(off)


def test_the_agent_reports_the_version_of_its_installed_distribution() -> None:
    from importlib.metadata import version

    from edge_agent.reporting import agent_version

    assert agent_version() == version("taxi-edge-agent") != "unknown"
