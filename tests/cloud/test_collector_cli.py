"""`cloud-collector --version` and `--help`: the endpoints served and the config keys read."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute

from cloud_collector.api import ROUTERS
from cloud_collector.cli import main
from cloud_collector.config import CollectorConfig
from cloud_collector.dashboard import router as dashboard_router


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return int(exit_.value.code or 0), capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--version")
    assert code == 0
    assert out.strip() == "cloud-collector 0.2.0"


def test_help_lists_every_endpoint_of_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "--help")
    assert code == 0
    listed = {tuple(line.split()[:2]) for line in out.splitlines() if line.startswith("  GET ")}
    served = {
        ("GET", route.path)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
    }
    assert len(served) >= 10
    dashboard = {
        ("GET", route.path) for route in dashboard_router.routes if isinstance(route, APIRoute)
    }
    assert served | dashboard | {("GET", "/")} == listed


def test_help_lists_every_config_section_and_key(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run(capsys, "--help")
    config_help = out[out.index("config sections and keys") :]
    for name, section in CollectorConfig.model_fields.items():
        assert f"[{name}]" in config_help
        model = section.annotation
        assert model is not None
        for key in model.model_fields:
            assert key in config_help, (name, key)


def test_run_help_stays_short(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "run", "--help")
    assert code == 0
    assert "--config" in out
    assert "HTTP endpoints" not in out
