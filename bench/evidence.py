"""Raw evidence of urgent events: what the rings hold in memory at full load, and what the
evidence adds to the uplink.

    .venv/bin/python -m bench.evidence [--minutes 10] [--ring-seconds 60] [--per-hour 10]

Uses the cached full-load two-bus recording of bench.decode (generated once under
bench/out/). Prints:

- ring memory at full load: the frames of the first ``--ring-seconds`` of both buses pushed
  through ``Evidence.on_frame`` with the default settings (2 MiB per bus, 5 s kept); the
  rings' own byte count, the Python heap they hold (tracemalloc) and the growth of this
  process's RSS, after a first read of the same frames without rings;
- uplink bytes: the whole recording through the pipeline with evidence on (the daily cap
  lifted, so every urgent event keeps its frames), drained every 10 s of driving into
  batches by lane as the agent does (urgent events alone, the rest bulk) and encoded
  (payload plus MQTT framing, as bench/pipeline.py counts). Evidence bytes per urgent event
  are the difference to the same batches without frames; the hourly figure is the bulk
  without evidence plus ``--per-hour`` events' evidence, against the zstd-compressed
  candump of the same hour (target < 10 %).
"""

from __future__ import annotations

import argparse
import gc
import json
import tracemalloc
from pathlib import Path
from typing import Any

from bench.decode import recording
from bench.pipeline import MQTT_OVERHEAD, zstd_size
from edge_agent.assemble import build_pipeline
from edge_agent.evidence import Evidence, EvidenceSettings
from edge_agent.feed import FrameFeed, each_channel_its_own_bus
from edge_agent.pipeline import Drained
from edge_agent.sources import ReplaySource
from protocol import Batch, encode_batch
from protocol.contracts import URGENT_EVENT_TYPES

TOPIC_LEN = len("fleet/bench/bench-1/batch")
BATCH_S = 10.0


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def ring_memory(path: Path, seconds: float, *, rings: bool = True) -> dict[str, Any]:
    """Memory the rings hold after ``seconds`` of the recording; with ``rings`` false the
    same read without them, whose RSS growth is the reader's own."""
    evidence = Evidence(EvidenceSettings(), URGENT_EVENT_TYPES.__contains__)
    gc.collect()
    rss_before = rss_bytes()
    tracemalloc.start()
    heap_before = tracemalloc.get_traced_memory()[0]
    start: float | None = None
    frames = 0
    for frame in ReplaySource(path).frames():
        start = frame.timestamp if start is None else start
        if frame.timestamp - start > seconds:
            break
        if rings:
            evidence.on_frame(str(frame.channel), frame)
        frames += 1
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0] - heap_before
    tracemalloc.stop()
    return {
        "frames_pushed": frames,
        "frames_held": sum(len(evidence.ring(str(bus))) for bus in ("can0", "can1")),
        "ring_bytes_counted": evidence.ring_bytes(),
        "heap_bytes": heap,
        "rss_growth_bytes": rss_bytes() - rss_before,
    }


def _payload_bytes(drained: Drained, *, with_frames: bool) -> int:
    urgent = [e for e in drained.events if e.type in URGENT_EVENT_TYPES]
    bulk_events = [e for e in drained.events if e.type not in URGENT_EVENT_TYPES]
    lanes: list[dict[str, Any]] = [
        {"events": urgent},
        {
            "events": bulk_events,
            "signals": drained.signals,
            "gnss": drained.fixes,
            "frames": drained.frames if with_frames else (),
        },
    ]
    total = 0
    for seq, records in enumerate(lanes, 1):
        if not any(records.values()):
            continue
        batch = Batch.build(
            fleet_id="bench", vehicle_id="bench-1", epoch=1, seq=seq, sent_ms=0, **records
        )
        total += len(encode_batch(batch)) + MQTT_OVERHEAD + TOPIC_LEN
    return total


def uplink(path: Path) -> dict[str, Any]:
    pipeline = build_pipeline(None, Path.cwd(), ["can0", "can1"])
    # Every urgent event keeps its frames here: the figure is the cost per event.
    settings = EvidenceSettings(day_cap_bytes=1 << 40, max_open=64)
    pipeline.evidence = Evidence(settings, URGENT_EVENT_TYPES.__contains__)
    push = FrameFeed(pipeline, each_channel_its_own_bus).push
    with_frames = without = 0
    first: float | None = None
    last = next_drain = 0.0
    for frame in ReplaySource(path).frames():
        first = frame.timestamp if first is None else first
        last = frame.timestamp
        push(frame)
        if last - first >= next_drain:
            next_drain += BATCH_S
            drained = pipeline.drain()
            with_frames += _payload_bytes(drained, with_frames=True)
            without += _payload_bytes(drained, with_frames=False)
    drained = pipeline.drain(final=True)
    with_frames += _payload_bytes(drained, with_frames=True)
    without += _payload_bytes(drained, with_frames=False)
    stats = pipeline.evidence.stats
    return {
        "hours": (last - (first or last)) / 3600,
        "urgent_events_with_evidence": stats.events,
        "evidence_frames": stats.frames,
        "bytes_with_evidence": with_frames,
        "bytes_without_evidence": without,
        "evidence_bytes_per_event": (with_frames - without) / max(1, stats.events),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--ring-seconds", type=float, default=60.0)
    parser.add_argument("--per-hour", type=float, default=10.0)
    args = parser.parse_args()
    log = recording(args.minutes)
    # The reader alone first: its churn grows the allocator's arenas once, so the RSS
    # growth of the second pass is what the rings add.
    reader_rss = ring_memory(log, args.ring_seconds, rings=False)["rss_growth_bytes"]
    ring = ring_memory(log, args.ring_seconds)
    up = uplink(log)
    hours = up["hours"]
    bulk_per_hour = up["bytes_without_evidence"] / hours
    per_hour = bulk_per_hour + args.per_hour * up["evidence_bytes_per_event"]
    zstd_per_hour = zstd_size(log) / hours
    print(
        f"ring at full load ({ring['frames_pushed']:,} frames of {args.ring_seconds:g} s, "
        f"{ring['frames_held']:,} held): {ring['ring_bytes_counted'] / 1e6:.2f} MB counted, "
        f"{ring['heap_bytes'] / 1e6:.2f} MB Python heap, RSS +{ring['rss_growth_bytes'] / 1e6:.2f}"
        f" MB (the same read before, without rings: +{reader_rss / 1e6:.2f} MB) (target < 5 MB)"
    )
    print(
        f"evidence: {up['urgent_events_with_evidence']} urgent events, "
        f"{up['evidence_frames']:,} frames, {up['evidence_bytes_per_event'] / 1e3:.1f} kB each "
        "on the uplink"
    )
    print(
        f"uplink with {args.per_hour:g} urgent events an hour: {per_hour / 1e6:.2f} MB/h "
        f"(bulk {bulk_per_hour / 1e6:.2f} MB/h) vs zstd candump {zstd_per_hour / 1e6:.2f} MB/h: "
        f"{100 * per_hour / zstd_per_hour:.2f} % (target < 10 %)"
    )
    print(
        json.dumps(
            {
                "ring": ring,
                "reader_rss": reader_rss,
                "uplink": up,
                "per_hour": per_hour,
                "zstd": zstd_per_hour,
            }
        )
    )


if __name__ == "__main__":
    main()
