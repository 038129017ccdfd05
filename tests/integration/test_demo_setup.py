"""``scripts/setup.sh``'s Debian part, its functions sourced in bash with fake ``fuser``,
``apt-get`` and ``systemctl`` first on the PATH (nothing is installed or disabled)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.collector import REPO

pytestmark = pytest.mark.integration

SETUP = REPO / "scripts" / "setup.sh"


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


@pytest.fixture
def fakes(tmp_path: Path) -> Path:
    """``fuser`` says the lock is held for its first two calls; ``apt-get`` prints what a
    real install prints; ``systemctl`` only writes down what it was asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake(
        bin_dir,
        "fuser",
        f"""n=$(cat {tmp_path}/fuser.n 2>/dev/null || echo 0)
echo $((n + 1)) > {tmp_path}/fuser.n
((n >= 2)) && exit 1
exit 0
""",
    )
    _fake(
        bin_dir,
        "apt-get",
        f"""echo "apt-get $*" >> {tmp_path}/calls
[[ " $* " == *" install "* ]] || exit 0
for p in "$@"; do
    [[ $p == -* || $p == install || $p == *=* ]] && continue
    echo "Unpacking $p (1.0) ..."
    echo "Setting up $p (1.0) ..."
done
""",
    )
    _fake(bin_dir, "systemctl", f'echo "systemctl $*" >> {tmp_path}/calls\n')
    return bin_dir


def _run(fakes: Path, script: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{fakes}:{os.environ['PATH']}",
        "SETUP_LOCK_POLL_S": "0",
        "SETUP_LOCK_TIMEOUT_S": "60",
    }
    return subprocess.run(
        ["bash", "-c", f"source {SETUP}\n{script}"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_waits_for_the_dpkg_lock_saying_so(fakes: Path) -> None:
    done = _run(fakes, "wait_for_dpkg_lock && echo free")
    assert done.returncode == 0, done.stderr
    assert "waiting for the dpkg lock" in done.stdout
    assert done.stdout.strip().endswith("free")
    assert (fakes.parent / "fuser.n").read_text().strip() == "3"


def test_gives_up_on_a_lock_held_too_long_in_one_line(fakes: Path) -> None:
    _fake(fakes, "fuser", "exit 0\n")
    done = _run(fakes, "LOCK_POLL_S=1 LOCK_TIMEOUT_S=2 wait_for_dpkg_lock")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "dpkg lock is still held after 2 s" in done.stderr


def test_installs_with_progress_and_disables_only_what_it_installed(fakes: Path) -> None:
    done = _run(fakes, "install_debian_packages mosquitto gcc")
    assert done.returncode == 0, done.stderr
    assert "setup:   set up mosquitto" in done.stdout
    assert "setup:   set up gcc" in done.stdout
    calls = (fakes.parent / "calls").read_text().splitlines()
    assert any(c.startswith("apt-get") and "install" in c and "mosquitto" in c for c in calls)
    disabled = [c for c in calls if c.startswith("systemctl")]
    # gpsd and PostgreSQL were there before (not in the list): their services stay as they are.
    assert disabled == ["systemctl disable --now mosquitto.service"]
    assert "disabling mosquitto.service (installed just now" in done.stdout


def test_sourcing_runs_nothing(fakes: Path) -> None:
    done = _run(fakes, "echo sourced")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "sourced\n"
    assert not (fakes.parent / "calls").exists()
