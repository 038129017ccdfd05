"""The parts install on their own, and their import boundaries hold.

* Each distribution lists every package directory it holds (a subpackage left out of
  ``packages`` would install without its modules).
* The edge agent's wheel, built from this checkout, installs into a clean virtualenv from
  local wheels only, pulls in none of the collector's web, database or geo stack, and runs
  ``edge-agent decode`` and ``edge-agent replay`` (against a real mosquitto and the acking
  test consumer) from there.
* ``lint-imports`` fails, naming the contract, when a module breaks a boundary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness import consumer
from harness.agent import FIXTURE, assert_exactly_once, expected, setup
from harness.mosquitto import MosquittoHarness

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("protocol", "daemon_kit", "edge_agent", "cloud_collector")
GATEWAY = ("protocol", "daemon_kit", "edge_agent")
WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
CLOUD_STACK = {"fastapi", "starlette", "uvicorn", "asyncpg", "h3", "mapbox-vector-tile"}


def _clean_env() -> dict[str, str]:
    """The environment without the checkout on the path, so only the installed wheel runs."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PIP_CONFIG_FILE"] = os.devnull  # no index: local wheels only
    return env


@pytest.mark.parametrize("part", PARTS)
def test_every_package_directory_is_in_its_distribution(part: str) -> None:
    config = tomllib.loads((ROOT / part / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join((part, *init.parent.relative_to(ROOT / part).parts))
        for init in (ROOT / part).rglob("__init__.py")
    }
    assert on_disk == listed


@pytest.fixture(scope="module")
def gateway_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not WHEELHOUSE.is_dir():
        pytest.fail(f"{WHEELHOUSE} is missing: run scripts/setup.sh")
    tmp = tmp_path_factory.mktemp("gateway")
    wheels = tmp / "wheels"
    for part in GATEWAY:  # built from a copy: setuptools leaves build/ where it builds
        shutil.copytree(ROOT / part, tmp / "src" / part, ignore=shutil.ignore_patterns("*.pyc"))
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    build += ["-q", "-w", str(wheels), *(str(tmp / "src" / p) for p in GATEWAY)]
    subprocess.run(build, check=True, env=_clean_env(), timeout=300)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index"]
    install += ["--find-links", str(wheels), "--find-links", str(WHEELHOUSE), "taxi-edge-agent"]
    subprocess.run(install, check=True, env=_clean_env(), timeout=300)
    return venv


@pytest.mark.integration
def test_the_gateway_install_has_no_cloud_stack(gateway_venv: Path) -> None:
    listing = subprocess.run(
        [str(gateway_venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        check=True, capture_output=True, text=True, env=_clean_env(), timeout=60,
    )  # fmt: skip
    installed = {d["name"].lower() for d in json.loads(listing.stdout)}
    assert {"taxi-edge-agent", "taxi-adas-protocol", "cantools"} <= installed
    assert not installed & CLOUD_STACK


@pytest.mark.integration
def test_decode_runs_from_the_gateway_install(gateway_venv: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [str(gateway_venv / "bin" / "edge-agent"), "decode", str(FIXTURE)],
        capture_output=True, text=True, env=_clean_env(), cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    types = {json.loads(line)["type"] for line in out.stdout.splitlines()}
    assert "fcw" in types


@pytest.mark.integration
def test_replay_runs_from_the_gateway_install(gateway_venv: Path, tmp_path: Path) -> None:
    with MosquittoHarness(tmp_path) as broker:
        s = setup(tmp_path, broker.port)
        proc = consumer.spawn(broker.port, s.db)
        try:
            cmd = [str(gateway_venv / "bin" / "edge-agent"), "replay", str(s.recording)]
            cmd += ["--speed", "0", "--timeout", "60", "--config", str(s.config)]
            done = subprocess.run(
                cmd, capture_output=True, text=True, env=_clean_env(), cwd=tmp_path,
                timeout=90, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
        finally:
            consumer.stop(proc)
    assert_exactly_once(s.db, expected(s.config, s.recording))


VIOLATION = "from cloud_collector import errors as _reaching_across  # noqa\n"


@pytest.mark.integration
def test_the_import_contracts_fail_on_a_violation(tmp_path: Path) -> None:
    """The real contracts, on a copy of the tree where one edge module imports the
    collector: lint-imports must fail and name the broken contract and the import."""
    for part in (*PARTS, "hw_fixtures", "harness", "demo", "bench", "tests"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    victim = tmp_path / "edge_agent" / "thin.py"
    victim.write_text(VIOLATION + victim.read_text())
    lint = Path(sys.executable).parent / "lint-imports"
    env = _clean_env() | {"PYTHONPATH": str(tmp_path)}
    broken = subprocess.run(
        [str(lint)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert broken.returncode == 1, broken.stdout[-2000:]
    assert "the edge agent and the collector never import each other BROKEN" in broken.stdout
    assert "edge_agent.thin -> cloud_collector.errors" in broken.stdout
