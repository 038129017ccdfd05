"""The dashboard map's pure parts (period windows, the tiles' query, the events' time
extent, measures, colour ramps, event colours) under node's own test runner:
``tests/browser/map.test.mjs``. The map in a browser: ``tests/integration/test_dashboard.py``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="needs node (scripts/setup.sh installs it)")
def test_the_map_logic_under_node() -> None:
    assert NODE is not None
    done = subprocess.run(
        [NODE, "--test", str(ROOT / "tests" / "browser" / "map.test.mjs")],
        capture_output=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout.decode()[-4000:] + done.stderr.decode()[-2000:]
