"""Secrets stay secret: a database password and an MQTT password never appear in the
collector's logs (debug level), reprs, error lines, API answers or /metrics; a config
file holding one is refused, naming the file, while every user may read it (the
collector's and the agent's)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from cloud_collector.config import load_config
from cloud_collector.errors import ConfigError
from cloud_collector.secrets import MASK, Redactor, masked_url, url_password
from edge_agent.config import load_config as load_agent_config
from edge_agent.errors import ConfigError as AgentConfigError
from harness.collector import CollectorProcess
from harness.mosquitto import MosquittoHarness, free_port
from harness.postgres import PgHarness

REPO = Path(__file__).resolve().parents[2]
DB_PASSWORD = "db-Pass:w0rd/x"  # with characters a URL quotes
MQTT_PASSWORD = "mqtt-hunter2-secret"


def _quoted(password: str) -> str:
    return password.replace(":", "%3A").replace("/", "%2F")


def test_urls_are_masked() -> None:
    url = f"postgresql://collector:{_quoted(DB_PASSWORD)}@db.example:5432/roads"
    assert url_password(url) == DB_PASSWORD
    assert masked_url(url) == f"postgresql://collector:{MASK}@db.example:5432/roads"
    assert masked_url("postgresql://h/db?user=u&password=pw1234") == (
        f"postgresql://h/db?user=u&password={MASK}"
    )
    assert masked_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert url_password("postgresql://u@h/db") is None


def test_the_redactor_masks_messages_arguments_and_tracebacks() -> None:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    logger = logging.getLogger("test.secrets")
    logger.propagate = False
    handler = Keep()
    logger.handlers[:] = [handler]
    Redactor([DB_PASSWORD, MQTT_PASSWORD]).install(logger)
    try:
        raise RuntimeError(f"connect to postgresql://u:{_quoted(DB_PASSWORD)}@h/db failed")
    except RuntimeError:
        logger.exception("store %s", MQTT_PASSWORD)
    text = "\n".join(lines)
    assert "failed" in text
    assert MASK in text
    for secret in (DB_PASSWORD, _quoted(DB_PASSWORD), MQTT_PASSWORD):
        assert secret not in text


def _collector_config(path: Path, body: str) -> Path:
    path.write_text(body)
    path.chmod(0o644)
    return path


def test_a_world_readable_collector_config_with_a_secret_is_refused(tmp_path: Path) -> None:
    path = _collector_config(tmp_path / "c.toml", f'[mqtt]\npassword = "{MQTT_PASSWORD}"\n')
    with pytest.raises(ConfigError, match=r"c\.toml: holds \[mqtt\] password but is readable"):
        load_config(path)
    url = f"postgresql://u:{_quoted(DB_PASSWORD)}@127.0.0.1:1/db"
    path.write_text(f'[store]\nurl = "{url}"\n')
    with pytest.raises(ConfigError, match=r"holds \[store\] url \(its password\)") as err:
        load_config(path)
    assert DB_PASSWORD not in str(err.value)
    path.chmod(0o640)  # owner and group (the service's) only
    cfg = load_config(path)
    assert DB_PASSWORD not in repr(cfg)
    assert _quoted(DB_PASSWORD) not in repr(cfg)
    assert MASK in repr(cfg.store)
    # Without a secret, the mode does not matter.
    plain = _collector_config(tmp_path / "plain.toml", '[store]\nurl = "postgresql://u@h/db"\n')
    assert load_config(plain).store.url == "postgresql://u@h/db"


def test_a_world_readable_agent_config_with_a_password_is_refused(tmp_path: Path) -> None:
    example = (REPO / "examples" / "agent.toml").read_text()
    assert "[mqtt]\n" in example
    path = tmp_path / "agent.toml"
    path.write_text(example)
    path.chmod(0o644)
    load_agent_config(path)  # no password: readable is fine
    path.write_text(example.replace("[mqtt]\n", f'[mqtt]\npassword = "{MQTT_PASSWORD}"\n', 1))
    with pytest.raises(AgentConfigError, match=r"agent\.toml: holds \[mqtt\] password but is"):
        load_agent_config(path)
    path.chmod(0o600)
    assert MQTT_PASSWORD not in repr(load_agent_config(path))


def test_an_unreachable_database_error_shows_no_password(tmp_path: Path) -> None:
    url = f"postgresql://u:{_quoted(DB_PASSWORD)}@127.0.0.1:{free_port()}/db"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[store]\nurl = "{url}"\n[http]\nlisten = "127.0.0.1:{free_port()}"\n')
    cfg.chmod(0o600)
    done = subprocess.run(
        [sys.executable, "-m", "cloud_collector.cli", "run", "--config", str(cfg)],
        check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert "cannot connect" in done.stderr
    for secret in (DB_PASSWORD, _quoted(DB_PASSWORD)):
        assert secret not in done.stderr + done.stdout


@pytest.mark.integration
def test_a_running_collector_never_shows_its_passwords(
    tmp_path: Path, broker: MosquittoHarness, pg_server: PgHarness
) -> None:
    plain = pg_server.create_database("secrets")
    url = plain.replace("@", f":{_quoted(DB_PASSWORD)}@", 1)  # the server trusts loopback
    http_port = free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[mqtt]\nport = {broker.port}\nusername = "collector"\npassword = "{MQTT_PASSWORD}"\n'
        f'[store]\nurl = "{url}"\n[http]\nlisten = "127.0.0.1:{http_port}"\n'
        '[log]\nlevel = "debug"\n'
    )
    cfg.chmod(0o600)
    collector = CollectorProcess(cfg, http_port, tmp_path / "c.log")
    collector.start()
    try:
        answers = [
            collector.get("/metrics").text,
            collector.get("/readyz").text,
            collector.get("/v1/events", cursor="bad!").text,
            collector.get("/v1/vehicles").text,
        ]
    finally:
        assert collector.terminate() == 0
    seen = "\n".join([*answers, collector.log_path.read_text()])
    assert "collector_" in seen  # the metrics were read
    for secret in (DB_PASSWORD, _quoted(DB_PASSWORD), MQTT_PASSWORD):
        assert secret not in seen
