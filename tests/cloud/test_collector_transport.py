"""The collector's transport options as a real process: HTTPS from the collector itself
with a certificate minted here (openssl), a separate loopback listener for /metrics, and
a clear one-line refusal for a missing or mismatched certificate or key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cloud_collector.config import HttpConfig, parse_config
from cloud_collector.errors import ConfigError
from cloud_collector.service import check_tls
from harness.collector import CollectorProcess, write_config
from harness.mosquitto import MosquittoHarness, free_port

pytestmark = pytest.mark.integration


def _mint(tmp_path: Path, name: str = "server") -> tuple[Path, Path]:
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    key.chmod(0o600)
    return cert, key


def test_https_and_a_separate_metrics_listener(tmp_path: Path, broker: MosquittoHarness) -> None:
    cert, key = _mint(tmp_path)
    http_port, metrics_port = free_port(), free_port()
    cfg = write_config(
        tmp_path / "c.toml",
        mqtt_port=broker.port,
        http_port=http_port,
        store_url=f"sqlite://{tmp_path / 's.db'}",
        http_extra=f'tls_cert = "{cert}"\ntls_key = "{key}"\n'
        f'metrics_listen = "127.0.0.1:{metrics_port}"',
        api_processes=1,  # HTTPS from the API process, /metrics from the ingest process
    )
    collector = CollectorProcess(cfg, http_port, tmp_path / "c.log", tls_ca=cert)
    collector.start()
    try:
        r = collector.get("/v1/events")
        assert r.status_code == 200
        assert r.url.scheme == "https"
        assert r.headers["x-content-type-options"] == "nosniff"
        # Plain HTTP on the TLS port is not served.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{http_port}/v1/events", timeout=5)
        m = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert m.status_code == 200
        assert "collector_" in m.text
        assert "collector_http_requests_in_progress" in m.text  # the API process's figures
        # Probes that no API load can hold up, and nothing else.
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/v1/events", timeout=5).status_code == 404
    finally:
        assert collector.terminate() == 0


def test_tls_files_are_checked_before_start(tmp_path: Path) -> None:
    cert, key = _mint(tmp_path)
    other_cert, _ = _mint(tmp_path, "other")
    missing = tmp_path / "nope.key"

    def http(**keys: str) -> HttpConfig:
        return parse_config({"http": keys}, "c.toml").http

    with pytest.raises(ConfigError, match=r"^\[http\] tls_key: .*nope\.key: cannot read"):
        check_tls(http(tls_cert=str(cert), tls_key=str(missing)))
    with pytest.raises(ConfigError, match=r"^\[http\] tls_cert/tls_key: .*not a PEM certificate"):
        check_tls(http(tls_cert=str(other_cert), tls_key=str(key)))
    assert check_tls(http()) is None
    assert check_tls(http(tls_cert=str(cert), tls_key=str(key))) is not None


def test_the_command_refuses_a_missing_key_in_one_line(tmp_path: Path) -> None:
    cert, _ = _mint(tmp_path)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[http]\ntls_cert = "{cert}"\ntls_key = "{tmp_path / "gone.key"}"\n')
    done = subprocess.run(
        [sys.executable, "-m", "cloud_collector.cli", "run", "--config", str(cfg)],
        check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("cloud-collector: [http] tls_key: ")
