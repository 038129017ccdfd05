"""Collector configuration: embedded defaults, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_collector.config import CollectorConfig, load_config
from cloud_collector.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_defaults_from_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("")
    cfg = load_config(path)
    assert cfg == CollectorConfig()
    assert (cfg.mqtt.host, cfg.mqtt.port) == ("127.0.0.1", 1883)
    assert (cfg.mqtt.group, cfg.mqtt.client_id) == ("collectors", "collector-1")
    assert (cfg.http.host, cfg.http.port) == ("127.0.0.1", 8080)
    assert cfg.store.url is None
    assert cfg.store.resolved_url(tmp_path) == f"sqlite:///{tmp_path}/var/collector.sqlite3"


def test_example_file_is_valid() -> None:
    cfg = load_config(REPO / "examples" / "collector.toml")
    assert cfg == CollectorConfig()  # the example documents exactly the defaults


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[mqtt]\nprot = 1\n", "key 'mqtt.prot': unknown key (did you mean 'port'?)"),
        ("[mqtt]\nport = 70000\n", "key 'mqtt.port'"),
        ('[mqtt]\ngroup = "a/b"\n', "key 'mqtt.group'"),
        ('[mqtt]\nclient_id = ""\n', "key 'mqtt.client_id'"),
        ('[http]\nlisten = "8080"\n', "key 'http.listen'"),
        ("[store]\nurl = 5\n", "key 'store.url'"),
        ('[stor]\nurl = "x"\n', "key 'stor': unknown key (did you mean 'store'?)"),
        ('[mqtt]\ntls_cert = "c.pem"\n', "key 'mqtt'"),
        ("[mqtt]\nreconnect_min_s = 5\nreconnect_max_s = 1\n", "reconnect_max_s must be at least"),
        ("[auth]\nk_anonymity = 0\n", "key 'auth.k_anonymity'"),
        ("[auth]\ncache_s = -1\n", "key 'auth.cache_s'"),
        ("[auth]\npseudonym_secret = 5\n", "key 'auth.pseudonym_secret'"),
        ('[audit]\npath = ""\n', "key 'audit.path'"),
        ("[http]\nprocesses = -1\n", "key 'http.processes'"),
        ("[http]\nnice = 20\n", "key 'http.nice'"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read"):
        load_config(tmp_path / "missing.toml")
    path = tmp_path / "broken.toml"
    path.write_text("[mqtt\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_config(path)


def test_the_mqtt_password_never_prints(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[mqtt]\nusername = "collector"\npassword = "hunter2-secret"\n')
    path.chmod(0o600)
    cfg = load_config(path)
    assert cfg.mqtt.password is not None
    assert cfg.mqtt.password.get_secret_value() == "hunter2-secret"
    assert "hunter2" not in repr(cfg)
    assert "hunter2" not in str(cfg.mqtt)
    path.write_text('[mqtt]\npassword = "hunter2-secret"\nport = "eighty"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "hunter2" not in str(err.value)
