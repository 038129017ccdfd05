"""An agent config for in-process runs whose link is a fake: the broker port is never dialled."""

from __future__ import annotations

from pathlib import Path

from harness.agent import MQTT_TUNING, make_recording, replay_config_toml


def write_config(tmp: Path, seconds: float = 20.0, extra: str = "") -> Path:
    make_recording(tmp / "drive.log", seconds)
    path = tmp / "agent.toml"
    path.write_text(
        replay_config_toml(
            vehicle="taxi-7",
            fleet="test-fleet",
            recording="drive.log",
            outbox="outbox.sqlite3",
            mqtt_port=1,  # never dialled: the fake link replaces the connection
            mqtt_extra=MQTT_TUNING.format(resend_ms=3000, extra=""),
            extra=extra,
        )
    )
    return path
