"""``examples/replay.toml`` runs as the README prints it: from a checkout, with no
directory to create first (its outbox path is relative to the file). Run on a copy of the
example and the bundled drive laid out as in the repository, against a real mosquitto and
the acking consumer; the copy differs from the example only in the broker's port."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import consumer
from harness.agent import EDGE_AGENT
from harness.collector import REPO
from harness.mosquitto import MosquittoHarness

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "examples" / "replay.toml"
DRIVE = REPO / "hw_fixtures" / "drives" / "drive.log"


def _checkout_copy(root: Path, port: int) -> None:
    (root / "examples").mkdir(parents=True)
    (root / "hw_fixtures" / "drives").mkdir(parents=True)
    # 20 s of the drive: enough batches to acknowledge, quick to replay.
    lines = DRIVE.read_text().splitlines(keepends=True)
    first = float(lines[0].split(maxsplit=1)[0][1:-1])
    short = [x for x in lines if float(x.split(maxsplit=1)[0][1:-1]) - first <= 20.0]
    (root / "hw_fixtures" / "drives" / "drive.log").write_text("".join(short))
    text, count = re.subn(r"(?m)^port = 1883$", f"port = {port}", EXAMPLE.read_text())
    assert count == 1, "examples/replay.toml names its broker's port once"
    (root / "examples" / "replay.toml").write_text(text)


def test_the_replay_example_runs_as_printed(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    with MosquittoHarness(tmp_path) as broker:
        _checkout_copy(root, broker.port)
        proc = consumer.spawn(broker.port, tmp_path / "consumer.sqlite3")
        try:
            done = subprocess.run(
                [str(EDGE_AGENT), "replay", "hw_fixtures/drives/drive.log",
                 "--config", "examples/replay.toml", "--speed", "0", "--timeout", "60"],
                cwd=root, capture_output=True, text=True, timeout=90, check=False,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )  # fmt: skip
        finally:
            consumer.stop(proc)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (root / "examples" / "replay.outbox.sqlite3").is_file()
    assert shutil.which("git") is None or not _tracked_outbox()


def _tracked_outbox() -> bool:
    """The outbox the example writes beside itself is ignored by git."""
    done = subprocess.run(
        ["git", "check-ignore", "-q", "examples/replay.outbox.sqlite3"],
        cwd=REPO, capture_output=True, check=False,
    )  # fmt: skip
    return done.returncode != 0
