"""Decode throughput: source -> decode -> extract -> thin, against a plain floor.

    .venv/bin/python -m bench.decode [--minutes 10] [--repeat 3] [--camera standard|me8]

Generates (once, cached under bench/out/) a full-load two-bus recording, then measures in
fresh child processes, so each peak RSS is its own:

- ``floor``: python-can's LogReader over the file and a plain cantools decode of every frame
  whose id is in the DBCs, nothing else;
- ``agent``: the agent's replay source and whole pipeline (decode, events, thinning, and
  the evidence rings of urgent events with their default settings, as ``run`` and
  ``replay`` have them; ``--no-evidence`` leaves them out, as ``decode`` does).

Prints frames per CPU-second for both, their ratio, and peak RSS. Best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"


def recording(minutes: int) -> Path:
    from hw_fixtures.generate import generate_drive

    path = OUT / f"full_load_{minutes}min" / "drive.log"
    if not path.exists():
        generate_drive(path.parent, minutes=minutes, full_load=True, formats=("log",))
    return path


def run_floor(path: Path) -> dict[str, Any]:
    import can
    import cantools

    from edge_agent.decode import MOBILEYE_DBC, VEHICLE_DBC, bundled_dbc

    by_id: dict[int, Any] = {}
    for name in (MOBILEYE_DBC, VEHICLE_DBC):
        db: Any = cantools.database.load_file(str(bundled_dbc(name)))
        for message in db.messages:
            by_id[message.frame_id] = message
    frames = decoded = 0
    start = time.process_time()
    for msg in can.LogReader(str(path)):
        frames += 1
        message = by_id.get(msg.arbitration_id)
        if message is not None and not msg.is_error_frame:
            message.decode(msg.data, allow_truncated=True)
            decoded += 1
    cpu = time.process_time() - start
    return {"frames": frames, "decoded": decoded, "cpu_s": cpu}


def run_agent(path: Path, camera: str = "standard", *, evidence: bool = True) -> dict[str, Any]:
    from edge_agent.assemble import build_pipeline
    from edge_agent.camera import CAMERA_MODELS
    from edge_agent.evidence import Evidence, EvidenceSettings
    from edge_agent.feed import FrameFeed, each_channel_its_own_bus
    from edge_agent.sources import ReplaySource
    from protocol.contracts import URGENT_EVENT_TYPES

    source = ReplaySource(path)
    pipeline = build_pipeline(None, Path.cwd(), ["can0", "can1"], camera=CAMERA_MODELS[camera])
    if evidence:
        pipeline.evidence = Evidence(EvidenceSettings(), URGENT_EVENT_TYPES.__contains__)
    # The frame feed every command uses: routing and fix merge included in the figure.
    push = FrameFeed(pipeline, each_channel_its_own_bus).push
    events = kept = 0
    start = time.process_time()
    for frame in source.frames():
        push(frame)
        if len(pipeline.events) > 1000:  # in the agent, batches take them away
            events += len(pipeline.events)
            pipeline.events.clear()
        if pipeline.evidence is not None and source.stats.frames % 5_000 == 0:
            kept += len(pipeline.evidence.take())  # about a second of driving, as the agent flushes
    events += len(pipeline.events)
    if pipeline.evidence is not None:
        kept += len(pipeline.evidence.take(final=True))
    samples = sum(len(s.times_ms) for s in pipeline.thinner.drain())
    cpu = time.process_time() - start
    return {
        "frames": source.stats.frames,
        "cpu_s": cpu,
        "events": events,
        "samples": samples,
        "evidence_frames": kept,
        "buses": {k: vars(v) for k, v in pipeline.counters.items()},
    }


def child(mode: str, path: Path, camera: str) -> None:
    if mode == "floor":
        result = run_floor(path)
    else:
        result = run_agent(path, camera, evidence=mode == "agent")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(mode: str, path: Path, camera: str = "standard") -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.decode", "--child", mode, "--file", str(path)]
    out = subprocess.run(
        [*command, "--camera", camera],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["fps"] = result["frames"] / result["cpu_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=["floor", "agent", "agent-no-evidence"])
    parser.add_argument("--no-evidence", action="store_true", help="the agent without rings")
    parser.add_argument("--file", type=Path)
    # The agent's camera model; the recording stays the generator's (Standard 0x700), so
    # this measures the model's decoding and normalising cost on the same frames.
    parser.add_argument("--camera", choices=["standard", "me8"], default="standard")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.file, args.camera)
        return
    path = recording(args.minutes)
    size_mb = path.stat().st_size / 1e6
    floor = max((measure("floor", path) for _ in range(args.repeat)), key=lambda r: r["fps"])
    mode = "agent-no-evidence" if args.no_evidence else "agent"
    agent = max(
        (measure(mode, path, args.camera) for _ in range(args.repeat)), key=lambda r: r["fps"]
    )
    seconds = args.minutes * 60
    print(
        f"recording: {path} ({size_mb:.1f} MB, {floor['frames']} frames, "
        f"{floor['frames'] / seconds:.0f} frames/s of driving)"
    )
    print(
        f"floor  (python-can LogReader + cantools decode): {floor['fps']:,.0f} frames/CPU-s, "
        f"peak RSS {floor['peak_rss_mb']:.1f} MB"
    )
    print(
        f"agent  (source -> decode -> extract -> thin, camera {args.camera}): "
        f"{agent['fps']:,.0f} frames/CPU-s, "
        f"peak RSS {agent['peak_rss_mb']:.1f} MB"
    )
    print(
        f"ratio agent/floor: {agent['fps'] / floor['fps']:.2f} "
        f"(target >= 0.7; absolute target >= 50,000 frames/CPU-s; RSS < 60 MB)"
    )
    print(
        f"agent output: {agent['events']} events, {agent['samples']} thinned samples, "
        f"{agent['evidence_frames']} evidence frames"
    )
    print(json.dumps({"floor": floor, "agent": agent}, default=str))


if __name__ == "__main__":
    main()
