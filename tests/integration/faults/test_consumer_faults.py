"""Faults against the test consumer (harness/consumer.py), where the collector is not the
point: broker down, broker restarts without persistence, the agent killed 22 times, the
consumer killed. Each ends with the consumer holding each record exactly once (compared
with an uninterrupted in-process pipeline run over the same frames) and with the ledger."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

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
    write_config,
)
from harness.faults.harness import consumer_report
from harness.faults.ledger import produced
from harness.mosquitto import MosquittoHarness, free_port


def _replay_bg(s: Setup, speed: float, timeout_s: float = 60) -> subprocess.Popen[str]:
    cmd = agent_cmd(s, "replay", str(s.recording), "--speed", str(speed))
    cmd += ["--timeout", str(timeout_s)]
    return subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)


def _finish(agent: subprocess.Popen[str], timeout_s: float = 90) -> None:
    _, err = agent.communicate(timeout=timeout_s)
    assert agent.returncode == 0, err[-3000:]


def _ledger(s: Setup) -> None:
    report = consumer_report(s.db, produced(s.config, s.recording))
    print(report.line())
    report.assert_clean()


def test_broker_down_for_a_while_then_back(tmp_path: Path) -> None:
    with MosquittoHarness(tmp_path) as broker:
        s = setup(tmp_path, broker.port)
        proc = consumer.spawn(broker.port, s.db)
        try:
            broker.kill()
            agent = _replay_bg(s, speed=0)
            time.sleep(5.0)  # the agent reads everything into its outbox meanwhile
            broker.start()
            _finish(agent)
        finally:
            consumer.stop(proc)
    assert_exactly_once(s.db, expected(s.config, s.recording))
    _ledger(s)


def test_broker_restarts_without_persistence_and_batches_are_resent(tmp_path: Path) -> None:
    with MosquittoHarness(tmp_path, persistence=False) as broker:
        s = setup(tmp_path, broker.port, resend_ms=2000)
        proc = consumer.spawn(broker.port, s.db)
        try:
            agent = _replay_bg(s, speed=4)  # ~10 s of data
            for _ in range(3):
                time.sleep(2.5)
                broker.restart()  # SIGKILL: everything in flight inside it is gone
            _finish(agent)
        finally:
            consumer.stop(proc)
    assert_exactly_once(s.db, expected(s.config, s.recording))
    _ledger(s)


def test_agent_killed_20_times_during_a_replay(tmp_path: Path) -> None:
    rng = random.Random(20260302)
    with MosquittoHarness(tmp_path) as broker:
        s = setup(tmp_path, broker.port)
        proc = consumer.spawn(broker.port, s.db)
        try:
            kills = 0
            for _ in range(22):
                agent = _replay_bg(s, speed=2)
                time.sleep(rng.uniform(0.3, 1.5))
                if agent.poll() is not None:
                    break  # finished before the kill
                agent.send_signal(signal.SIGKILL)
                agent.wait(10)
                agent.stderr.close()  # type: ignore[union-attr]
                kills += 1
            assert kills >= 20
            done = replay(s, speed=2, timeout_s=60, wait_s=120)
            assert done.returncode == 0, done.stderr[-3000:]
        finally:
            consumer.stop(proc)
    assert_exactly_once(s.db, expected(s.config, s.recording))
    _ledger(s)


def test_consumer_killed_and_restarted(tmp_path: Path) -> None:
    with MosquittoHarness(tmp_path) as broker:
        s = setup(tmp_path, broker.port)
        proc = consumer.spawn(broker.port, s.db)
        try:
            agent = _replay_bg(s, speed=4)
            for _ in range(3):
                time.sleep(2.0)
                consumer.stop(proc)
                time.sleep(1.0)
                proc = consumer.spawn(broker.port, s.db)
            _finish(agent)
        finally:
            consumer.stop(proc)
    assert_exactly_once(s.db, expected(s.config, s.recording))
    _ledger(s)


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    s = setup(tmp_path, free_port(), extra="keepalive = 5")
    done = replay(s, timeout_s=2)
    assert done.returncode != 0
    assert "mqtt.keepalive" in done.stderr
    assert "keepalive_s" in done.stderr  # the suggestion for the misspelt key
    assert not (tmp_path / "outbox.sqlite3").exists()


def test_unreachable_broker_then_wrong_tls_then_delivery(tmp_path: Path) -> None:
    port = free_port()
    s = setup(tmp_path, port)
    # 1. Nobody listens: the replay reads everything, then times out saying what is pending.
    done = replay(s, timeout_s=3)
    assert done.returncode != 0
    assert "pending" in done.stderr, done.stderr[-2000:]
    assert "seqs 1.." in done.stderr
    before = status(s)
    pending = before["pending_batches"]
    assert isinstance(pending, int)
    assert pending > 0
    # 2. Wrong TLS file paths: refused before anything is touched; the outbox is intact.
    write_config(tmp_path, port, extra='tls_ca = "certs/missing-ca.pem"')
    done = replay(s, timeout_s=3)
    assert done.returncode != 0
    assert "mqtt.tls_ca" in done.stderr
    assert "missing-ca.pem" in done.stderr
    after = status(s)
    assert after["pending_batches"] == before["pending_batches"]
    assert after["pending_bytes"] == before["pending_bytes"]
    # 3. The broker appears: the same outbox delivers everything, exactly once.
    write_config(tmp_path, port)
    with MosquittoHarness(tmp_path, port=port) as broker:
        proc = consumer.spawn(broker.port, s.db)
        try:
            done = replay(s, timeout_s=60)
            assert done.returncode == 0, done.stderr[-3000:]
        finally:
            consumer.stop(proc)
    assert_exactly_once(s.db, expected(s.config, s.recording))
    _ledger(s)
