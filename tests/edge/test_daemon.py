"""The agent end to end: ``edge-agent replay|run|status`` as real processes, with a real
mosquitto and the test consumer (set-up in harness/agent.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from edge_agent.checkpoint import Checkpoint
from edge_agent.errors import AgentError, OutboxError
from edge_agent.outbox_status import read_status
from edge_agent.replay import ranges
from harness import consumer
from harness.agent import (
    ROOT,
    Setup,
    agent_cmd,
    assert_exactly_once,
    expected,
    replay,
    setup,
    status,
)
from harness.mosquitto import MosquittoHarness, free_port


@pytest.mark.integration
def test_replay_delivers_everything_exactly_once(tmp_path: Path) -> None:
    with MosquittoHarness(tmp_path) as broker:
        s = setup(tmp_path, broker.port)
        proc = consumer.spawn(broker.port, s.db)
        try:
            done = replay(s)
            assert done.returncode == 0, done.stderr[-3000:]
            report = status(s)
            assert report["pending_batches"] == 0
            # A second run after completion only waits for acks: nothing is sent twice.
            again = replay(s)
            assert again.returncode == 0, again.stderr[-3000:]
        finally:
            consumer.stop(proc)
    want = expected(s.config, s.recording)
    assert want.events, "the recording should produce events"
    assert_exactly_once(s.db, want)
    assert consumer.load_results(s.db).duplicates == 0


@pytest.mark.integration
def test_run_drains_on_sigterm_and_status_reads_the_outbox(tmp_path: Path) -> None:
    with MosquittoHarness(tmp_path) as broker:
        s = setup(tmp_path, broker.port)
        proc = consumer.spawn(broker.port, s.db)
        try:
            agent = subprocess.Popen(agent_cmd(s, "run"), cwd=ROOT, stderr=subprocess.PIPE)
            # Until the running agent has stored something (status reads its outbox).
            deadline = time.monotonic() + 60
            while not _stored_something(s) and time.monotonic() < deadline:
                assert agent.poll() is None, agent.communicate()[1].decode()[-3000:]
                time.sleep(0.2)
            assert agent.poll() is None
            assert isinstance(status(s)["epoch"], int)  # readable while the agent runs
            os.kill(agent.pid, signal.SIGTERM)
            _, err = agent.communicate(timeout=20)
            assert agent.returncode == 0, err.decode()[-3000:]
        finally:
            consumer.stop(proc)
    # Everything read before SIGTERM was flushed, force-closed and published.
    got = consumer.load_results(s.db)
    assert got.samples
    report = status(s)
    assert report["staged_records"] == 0


def _stored_something(s: Setup) -> bool:
    """The outbox holds records: staged, in a batch, or already acknowledged."""
    try:
        report = read_status(s.dir / "outbox.sqlite3", int(time.time() * 1000))
    except OutboxError:
        return False  # not created yet
    return any(report.get(k) for k in ("staged_records", "pending_batches", "highest_acked_seq"))


def test_status_without_an_outbox_is_a_clear_error(tmp_path: Path) -> None:
    s = setup(tmp_path, free_port())
    out = subprocess.run(
        agent_cmd(s, "status"), check=False, capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert out.returncode != 0
    assert "outbox" in out.stderr


def test_pending_seqs_are_reported_as_ranges() -> None:
    assert ranges([1, 2, 3, 7, 9, 10]) == "1..3, 7, 9..10"
    assert ranges([]) == ""


def test_a_damaged_checkpoint_is_a_clear_error() -> None:
    state = {"version": 1, "extractor": {"edges": {"fcw": True}}, "thinner": {}}
    blob = Checkpoint("/x/drive.log", 512, False, state).dump()
    assert Checkpoint.load(blob) == Checkpoint("/x/drive.log", 512, False, state)
    with pytest.raises(AgentError, match="unreadable replay checkpoint"):
        Checkpoint.load(b"\x80garbage")
