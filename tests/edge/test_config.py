"""Config loading: good files, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import load_config
from edge_agent.decode import MOBILEYE_DBC, VEHICLE_DBC
from edge_agent.errors import ConfigError
from edge_agent.uplink import UplinkSettings

GOOD = """
[vehicle]
id = "taxi-0042"
fleet = "seoul-north"

[[bus]]
name = "camera"
interface = "socketcan"
channel = "can0"

[[bus]]
name = "vehicle"
interface = "replay"
channel = "drive.log"
logged_channel = "can1"
dbc = "cars/sonata.dbc"

[gnss]
gpsd = "127.0.0.1:2947"

[outbox]
path = "/tmp/outbox.sqlite3"
max_bytes = 10485760

[mqtt]
host = "broker.local"
port = 8883

[camera]
sound_table = "awsdisplay"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    path.chmod(0o600)  # private, as a config holding a password must be
    return path


def test_good_config_loads_with_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.vehicle.id == "taxi-0042"
    camera, vehicle = cfg.bus
    assert camera.dbc_paths(tmp_path)[0].name == MOBILEYE_DBC
    assert camera.dbc_paths(tmp_path)[0].exists()
    assert vehicle.dbc_paths(tmp_path) == [tmp_path / "cars/sonata.dbc"]
    assert cfg.outbox.max_bytes == 10 << 20
    assert cfg.camera.table()[5] == "soft_fcw"
    assert cfg.events.harsh_braking_g == 0.3
    minimal = load_config(write(tmp_path, GOOD.split("[gnss]", maxsplit=1)[0]))
    assert minimal.gnss is None
    assert minimal.outbox.max_bytes == 256 << 20
    assert minimal.bus[1].effective_role == "vehicle"
    assert Path(str(minimal.bus[1].dbc)).name != VEHICLE_DBC


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (
            lambda s: s.replace('interface = "socketcan"', 'interfce = "socketcan"'),
            r"agent\.toml: key 'bus\[0\]\.interfce': unknown key \(did you mean 'interface'\?\)",
        ),
        (
            lambda s: s.replace('interface = "socketcan"\n', ""),
            r"key 'bus\[0\]\.interface': required key is missing",
        ),
        (lambda s: s.replace("port = 8883", 'port = "eighty"'), r"key 'mqtt\.port': .*integer"),
        (lambda s: s.replace("port = 8883", "port = 70000"), r"key 'mqtt\.port': .*65535"),
        (
            lambda s: s.replace('id = "taxi-0042"', 'id = "taxi/42"'),
            r"key 'vehicle\.id': .*pattern",
        ),
        (lambda s: s.replace('"127.0.0.1:2947"', '"localhost"'), r"key 'gnss\.gpsd'"),
        (
            lambda s: s.replace('"awsdisplay"', '"klingon"'),
            r"key 'camera\.sound_table': expected one of",
        ),
        (
            lambda s: s.replace('name = "vehicle"', 'name = "camera"'),
            r"key 'bus': bus names must be unique",
        ),
        (lambda s: s + "\n[surprise]\nx = 1\n", r"key 'surprise': unknown key"),
        (
            lambda s: s.replace(
                "[mqtt]\n", "[mqtt]\nreconnect_min_s = 5.0\nreconnect_max_s = 1.0\n", 1
            ),
            r"key 'mqtt': reconnect_max_s must be at least reconnect_min_s",
        ),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, mutation, expected: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=expected) as err:
        load_config(write(tmp_path, mutation(GOOD)))
    assert "\n" not in str(err.value)


def test_unreadable_or_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"agent\.toml: not valid TOML: .*line 2"):
        load_config(write(tmp_path, "[vehicle]\nid = \n"))


def test_example_files_in_the_repository_load() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    agent = load_config(examples / "agent.toml")
    assert [b.name for b in agent.bus] == ["camera", "vehicle"]
    assert agent.gnss is not None
    replay = load_config(examples / "replay.toml")
    assert {b.interface for b in replay.bus} == {"replay"}


def test_replay_config_helper_writes_a_valid_config(tmp_path: Path) -> None:
    from harness.agent import replay_config_toml

    path = write(
        tmp_path,
        replay_config_toml(
            vehicle="taxi-1",
            fleet="demo",
            recording=tmp_path / 'odd "name".log',
            outbox="outbox.sqlite3",
            mqtt_port=1884,
            mqtt_extra="keepalive_s = 10",
            nmea="track.nmea",
            extra="\n[health]\ninterval_s = 5\n",
        ),
    )
    cfg = load_config(path)
    assert [(b.name, b.logged_channel) for b in cfg.bus] == [
        ("camera", "can0"),
        ("vehicle", "can1"),
    ]
    assert cfg.bus[0].channel == str(tmp_path / 'odd "name".log')
    assert (cfg.mqtt.port, cfg.mqtt.keepalive_s) == (1884, 10)
    assert cfg.gnss is not None
    assert cfg.gnss.nmea == "track.nmea"


def test_the_mqtt_password_never_prints(tmp_path: Path) -> None:
    text = GOOD.replace("[mqtt]\n", '[mqtt]\nusername = "taxi"\npassword = "hunter2-secret"\n', 1)
    config = load_config(write(tmp_path, text))
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "hunter2-secret"
    settings = UplinkSettings.from_config(config, tmp_path)
    for shown in (repr(config), str(config.mqtt), repr(settings)):
        assert "hunter2" not in shown
    # A mistake elsewhere in the same section names the key, not the password.
    bad = write(tmp_path, text.replace("port = 8883", 'port = "eighty"'))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "hunter2" not in str(err.value)
    wrong_type = write(tmp_path, text.replace('password = "hunter2-secret"', "password = 123456"))
    with pytest.raises(ConfigError, match=r"key 'mqtt\.password'") as err:
        load_config(wrong_type)
    assert "123456" not in str(err.value)


def test_evidence_defaults_and_keys(tmp_path: Path) -> None:
    default = load_config(write(tmp_path, GOOD)).evidence.settings()
    assert (default.enabled, default.before_ms, default.after_ms) == (True, 5_000, 2_000)
    text = GOOD + "\n[evidence]\nbefore_s = 1.5\nafter_s = 0.25\nday_cap_bytes = 1000\n"
    custom = load_config(write(tmp_path, text)).evidence.settings()
    assert (custom.before_ms, custom.after_ms, custom.day_cap_bytes) == (1_500, 250, 1000)
    with pytest.raises(ConfigError, match=r"evidence\.after_s"):
        load_config(write(tmp_path, GOOD + "\n[evidence]\nafter_s = -1\n"))
    with pytest.raises(ConfigError, match="did you mean 'before_s'"):
        load_config(write(tmp_path, GOOD + "\n[evidence]\nbefore = 3\n"))
