"""The whole agent under full load: ``edge-agent replay --speed 0`` to a local mosquitto.

    .venv/bin/python -m bench.pipeline [--minutes 10]

Uses the cached full-load two-bus recording of bench.decode (generated once under
bench/out/), a mosquitto on a free 127.0.0.1 port and the test consumer (commit, then
PUBACK, then end-to-end ack). Prints, for the agent process alone:

- frames per CPU-second (user + system time of the child, from its resource usage),
  next to the decode floor (bench.decode.run_floor, measured in this run);
- peak RSS;
- uplink bytes per hour of driving with the default profile (MQTT PUBLISH packets of the
  batches: payload, topic and fixed framing; TCP/TLS not included), next to the
  zstd-compressed size of the raw candump log for the same hour (target < 5 %).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zstandard

from bench.decode import recording, run_floor
from tests import consumer
from tests.mosquitto_harness import MosquittoHarness
from tests.support.agent_config import replay_config_toml

ROOT = Path(__file__).resolve().parent.parent
# PUBLISH framing besides payload and topic: fixed header (<= 5), topic length (2),
# packet id (2), properties length (1); and the 4-byte PUBACK coming back.
MQTT_OVERHEAD = 5 + 2 + 2 + 1 + 4


def zstd_size(path: Path) -> int:
    compressor = zstandard.ZstdCompressor(level=3)
    with path.open("rb") as src, tempfile.TemporaryFile() as dst:
        compressor.copy_stream(src, dst)
        return dst.tell()


def head(log: Path, minutes: float, out: Path) -> Path:
    """The first ``minutes`` of a candump log."""
    with log.open() as src, out.open("w") as dst:
        start: float | None = None
        for line in src:
            stamp = float(line.split(maxsplit=1)[0][1:-1])
            start = stamp if start is None else start
            if stamp - start > minutes * 60:
                break
            dst.write(line)
    return out


def run_agent(workdir: Path, log: Path, port: int, speed: float = 0) -> dict[str, Any]:
    config = workdir / "agent.toml"
    config.write_text(
        replay_config_toml(
            vehicle="bench-1",
            fleet="bench",
            recording="drive.log",
            outbox=workdir / "outbox.sqlite3",
            mqtt_port=port,
            # The benchmark measures the agent, not the catch-up limiter.
            mqtt_extra="catchup_rate_bytes_per_s = 0",
        )
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic()
    cmd = [sys.executable, "-m", "edge_agent.cli", "replay", str(log), "--config", str(config)]
    out = subprocess.run(
        [*cmd, "--speed", str(speed), "--timeout", "300"],
        check=False,
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=ROOT,
    )
    wall = time.monotonic() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"agent failed ({out.returncode}): {out.stderr[-3000:]}")
    summary: dict[str, Any] = next(
        json.loads(line)["summary"]
        for line in reversed(out.stderr.splitlines())
        if line.startswith('{"summary"')
    )
    summary["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss of RUSAGE_CHILDREN is the largest reaped child: the agent is the only one
    # reaped so far (mosquitto and the consumer are still running).
    summary["peak_rss_mb"] = after.ru_maxrss / 1024
    summary["wall_s"] = wall
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument(
        "--real-time-minutes",
        type=float,
        default=0,
        help="also replay the first N minutes at recorded pace: at --speed 0 a batch closes "
        "after 10 s of wall time and so holds minutes of driving, which understates the "
        "per-batch overhead of real driving",
    )
    args = parser.parse_args()
    log = recording(args.minutes)
    hours = args.minutes / 60
    floor = run_floor(log)
    floor_fps = floor["frames"] / floor["cpu_s"]
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        workdir = Path(tmp)
        with MosquittoHarness(workdir) as broker:
            proc = consumer.spawn(broker.port, workdir / "collector.sqlite3")
            try:
                agent = run_agent(workdir, log, broker.port)
            finally:
                consumer.stop(proc)
            got = consumer.load_results(workdir / "collector.sqlite3")
            paced: dict[str, Any] | None = None
            if args.real_time_minutes > 0:
                short = head(log, args.real_time_minutes, workdir / "head.log")
                (workdir / "outbox.sqlite3").unlink()
                proc = consumer.spawn(broker.port, workdir / "collector-rt.sqlite3")
                try:
                    paced = run_agent(workdir, short, broker.port, speed=1)
                finally:
                    consumer.stop(proc)
    uplink = agent["uplink"]
    topic_len = len("fleet/bench/bench-1/batch")
    wire_bytes = uplink["published_bytes"] + uplink["published"] * (MQTT_OVERHEAD + topic_len)
    raw_zstd = zstd_size(log)
    agent_fps = floor["frames"] / agent["cpu_s"]
    print(f"recording: {log} ({log.stat().st_size / 1e6:.1f} MB, {floor['frames']:,} frames)")
    print(f"floor (LogReader + cantools decode): {floor_fps:,.0f} frames/CPU-s")
    print(
        f"agent (replay --speed 0, whole process incl. start-up, outbox, MQTT): "
        f"{agent_fps:,.0f} frames/CPU-s ({agent['cpu_s']:.1f} CPU-s, {agent['wall_s']:.1f} s "
        f"wall), ratio to floor {agent_fps / floor_fps:.2f}"
    )
    print(f"agent peak RSS: {agent['peak_rss_mb']:.1f} MB")
    print(
        f"delivered: {uplink['published']} publishes ({uplink['resent']} resent), "
        f"{len(got.receipts)} batches at the consumer, {sum(got.events.values())} events, "
        f"{sum(got.samples.values())} samples, {got.duplicates} duplicates dropped"
    )
    per_hour = wire_bytes / hours
    zstd_per_hour = raw_zstd / hours
    print(
        f"uplink: {per_hour / 1e6:.2f} MB per hour of driving vs zstd candump "
        f"{zstd_per_hour / 1e6:.2f} MB/h: {100 * per_hour / zstd_per_hour:.2f} % (target < 5 %)"
    )
    if paced is not None:
        u = paced["uplink"]
        rt_bytes = u["published_bytes"] + u["published"] * (MQTT_OVERHEAD + topic_len)
        rt_per_hour = rt_bytes / (args.real_time_minutes / 60)
        print(
            f"uplink at recorded pace (first {args.real_time_minutes:g} min, {u['published']} "
            f"batches): {rt_per_hour / 1e6:.2f} MB/h: "
            f"{100 * rt_per_hour / zstd_per_hour:.2f} % of zstd candump"
        )
    print(
        json.dumps(
            {
                "floor_fps": floor_fps,
                "agent_fps": agent_fps,
                "agent": agent,
                "uplink_bytes_per_hour": per_hour,
                "zstd_candump_bytes_per_hour": zstd_per_hour,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
