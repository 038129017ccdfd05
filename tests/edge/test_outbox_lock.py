"""One writer per outbox: a second opener is refused with the holder's pid, in process and
as a second real ``edge-agent replay`` beside a running one."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from edge_agent.errors import OutboxError
from edge_agent.outbox import Outbox, Records, lock_path
from edge_agent.outbox_status import read_status
from harness import consumer
from harness.agent import (
    ROOT,
    Setup,
    agent_cmd,
    assert_exactly_once,
    expected,
    make_recording,
    status,
    write_config,
)
from harness.mosquitto import MosquittoHarness
from protocol.records import Event

T0 = 1_700_000_000_000


async def test_a_second_opener_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = await Outbox.open(path, fleet_id="f", vehicle_id="taxi-1")
    await box.append(Records(events=(Event("fcw", T0, None, None, None),)), T0)
    with pytest.raises(OutboxError) as refused:
        await Outbox.open(path, fleet_id="f", vehicle_id="taxi-1")
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message
    assert str(path) in message
    assert "\n" not in message
    # The refused opener changed nothing; a reader still sees the holder's records.
    assert read_status(path, T0)["staged_records"] == 1
    await box.close()
    again = await Outbox.open(path, fleet_id="f", vehicle_id="taxi-1")  # released on close
    assert (await again.stats(T0)).staged_records == 1
    await again.close()


def _wait_for_holder(lock: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the first agent ended before it held the outbox"
        if lock.exists() and lock.read_text().strip() == str(proc.pid):
            return
        time.sleep(0.05)
    raise AssertionError("the first agent never took the outbox lock")


@pytest.mark.integration
def test_a_second_agent_on_the_same_outbox_exits_naming_the_pid(tmp_path: Path) -> None:
    with MosquittoHarness(tmp_path) as broker:
        recording = make_recording(tmp_path / "drive.log", seconds=8.0)
        s = Setup(tmp_path, write_config(tmp_path, broker.port), recording, tmp_path / "c.db")
        proc = consumer.spawn(broker.port, s.db)
        try:
            # Paced at the recorded speed: the first agent holds the outbox ~8 s, longer than
            # a second one takes to start on a loaded machine.
            first = subprocess.Popen(
                agent_cmd(s, "replay", str(recording), "--speed", "1", "--timeout", "60"),
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                _wait_for_holder(lock_path(tmp_path / "outbox.sqlite3"), first, 20)
                second = subprocess.run(
                    agent_cmd(s, "replay", str(recording), "--speed", "0", "--timeout", "60"),
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                assert isinstance(status(s)["epoch"], int)  # read-only status still works
                _, first_err = first.communicate(timeout=60)
            finally:
                if first.poll() is None:
                    first.kill()
                    first.wait()
            assert first.returncode == 0, first_err.decode()[-3000:]
        finally:
            consumer.stop(proc)
    assert second.returncode != 0
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert f"pid {first.pid}" in lines[0]
    assert "Traceback" not in second.stderr
    assert_exactly_once(s.db, expected(s.config, recording))
    assert consumer.load_results(s.db).duplicates == 0
