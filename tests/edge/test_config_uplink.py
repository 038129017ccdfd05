"""The [mqtt] uplink tuning keys: defaults, accepted values and errors naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from edge_agent.config import AgentConfig, parse_config
from edge_agent.errors import ConfigError

BASE: dict[str, Any] = {
    "vehicle": {"id": "taxi-1", "fleet": "f"},
    "bus": [{"name": "camera", "interface": "virtual", "channel": "0"}],
}


def _with_mqtt(**mqtt: Any) -> AgentConfig:
    return parse_config({**BASE, "mqtt": mqtt}, "agent.toml")


def test_defaults_suit_a_cellular_link() -> None:
    m = parse_config(BASE, "agent.toml").mqtt
    assert m.keepalive_s == 120
    assert m.session_expiry_s == 86_400
    assert m.max_inflight == 16
    assert m.inflight_budget_share == 0.25
    assert m.resend_after_ms == 60_000
    assert m.catchup_rate_bytes_per_s == 32_768
    assert m.catchup_burst_bytes == 65_536
    assert m.reconnect_min_s == 1.0
    assert m.reconnect_max_s == 120.0
    assert m.connect_timeout_s == 15.0
    assert m.publish_timeout_s == 20.0
    assert m.last_publish_s == 3.0


@pytest.mark.parametrize(
    ("key", "good", "bad"),
    [
        ("keepalive_s", 300, 5),
        ("session_expiry_s", 3600, -1),
        ("connect_timeout_s", 5.0, 0),
        ("publish_timeout_s", 10.0, 0),
        ("max_inflight", 4, 0),
        ("inflight_budget_share", 0.5, 0),
        ("inflight_budget_share", 1.0, 1.5),
        ("resend_after_ms", 5000, 10),
        ("catchup_rate_bytes_per_s", 0, -1),
        ("catchup_burst_bytes", 1024, -1),
        ("reconnect_min_s", 0.5, 0),
        ("reconnect_max_s", 60.0, 0),
        ("last_publish_s", 5.0, 61),
    ],
)
def test_each_uplink_key_is_checked(key: str, good: object, bad: object) -> None:
    assert getattr(_with_mqtt(**{key: good}).mqtt, key) == good
    with pytest.raises(ConfigError, match=rf"agent\.toml: key 'mqtt\.{key}'"):
        _with_mqtt(**{key: bad})


def test_a_misspelt_uplink_key_suggests_the_right_one() -> None:
    with pytest.raises(ConfigError, match="did you mean 'keepalive_s'"):
        _with_mqtt(keepalive=60)
