"""Agent configuration text for tests, the benchmarks and the demo."""

from __future__ import annotations

import json
from pathlib import Path


def replay_config_toml(
    *,
    vehicle: str,
    fleet: str,
    recording: str | Path,
    outbox: str | Path,
    mqtt_port: int,
    mqtt_extra: str = "",
    nmea: str | Path | None = None,
    extra: str = "",
) -> str:
    """The config of one taxi replaying a two-bus recording (camera on ``can0``, vehicle
    on ``can1``), as the demo, the tests and the benchmarks run it.

    ``mqtt_extra`` is TOML lines added to ``[mqtt]``; ``extra``, whole sections at the end.
    Relative paths are relative to the config file, as in any config.
    """

    def q(value: str | Path) -> str:
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string

    buses = "".join(
        f'\n[[bus]]\nname = {q(name)}\ninterface = "replay"\nchannel = {q(recording)}\n'
        f"logged_channel = {q(channel)}\n"
        for name, channel in (("camera", "can0"), ("vehicle", "can1"))
    )
    gnss = "" if nmea is None else f"\n[gnss]\nnmea = {q(nmea)}\n"
    return (
        f"[vehicle]\nid = {q(vehicle)}\nfleet = {q(fleet)}\n{buses}{gnss}"
        f"\n[outbox]\npath = {q(outbox)}\n"
        f'\n[mqtt]\nhost = "127.0.0.1"\nport = {mqtt_port}\n{mqtt_extra.strip()}\n{extra}'
    )
