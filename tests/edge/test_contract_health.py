"""Health keys: the names the agent's modules use are the contract's, and a snapshot is
checked against the contract key by key (a real replay's snapshots are checked in
tests/test_health.py)."""

from __future__ import annotations

import pytest

from edge_agent import batching, health, outbox
from edge_agent.gnss import GpsdClient
from protocol import contracts
from protocol.contracts import health_key, health_problems


def test_templated_keys_match_any_bus_and_nothing_else() -> None:
    fps = health_key("bus_camera_fps")
    assert fps is not None
    assert fps.name == "bus_<name>_fps"
    assert health_key("bus_vehicle-2_active") == health_key(contracts.BUS_ACTIVE)
    assert health_key("bus_camera_error_frames") == health_key("bus_<name>_error_frames")
    assert health_key("bus__fps") is None
    assert health_key("bus_camera_fps_x") is None
    assert contracts.bus_key(contracts.BUS_ACTIVE, "camera") == "bus_camera_active"


def test_health_problems_names_unknown_keys_and_wrong_types() -> None:
    good = {"uptime_s": 3, "cpu_pct": None, "disk_full": False, "bus_cam_frames": 7}
    assert health_problems(good) == []
    bad = {
        "uptime_secs": 3.0,
        "disk_full": 0,
        "next_seq": True,
        "disk_reserve_bytes": None,
        "agent_mode": 1,
        "bus_cam_fps": "fast",
    }
    assert health_problems(bad) == [
        "uptime_secs: not a health key of protocol/contracts.py",
        "disk_full: int where bool is expected",
        "next_seq: bool where int is expected",
        "disk_reserve_bytes: NoneType where int is expected",
        "agent_mode: int where str is expected",
        "bus_cam_fps: str where float is expected",
    ]


def test_key_names_the_agent_modules_build_are_contract_keys() -> None:
    """The agent imports its fixed key names from the contract; these are the names it
    builds or takes from its own tables."""
    names = [
        health.bus_frames_key("camera"),
        health.bus_key("camera", "dropped"),
        outbox.EVICTED_RECORDS,
        batching.EVICTED_FOR_SPACE,
        *batching.EVICTION_CAUSE.values(),
        *outbox.INTEGRITY_COUNTERS,
    ]
    assert [n for n in names if health_key(n) is None] == []


def test_gpsd_client_counters_are_contract_keys() -> None:
    client = GpsdClient("127.0.0.1", 1)
    client.malformed["bad_json"] += 1
    stats = client.stats()
    assert "gnss_malformed_bad_json" in stats
    assert health_problems(dict(stats)) == []


@pytest.mark.parametrize("key", contracts.HEALTH_KEYS, ids=lambda k: k.name)
def test_every_key_has_a_meaning_and_a_known_type(key: contracts.HealthKey) -> None:
    assert key.meaning.strip()
    assert key.type in ("int", "float", "bool", "str")
    assert "|" not in key.meaning  # would break the generated Markdown table
