"""Precision of the event extractors: false events per hour by type.

    .venv/bin/python -m bench.precision [--minutes 30] [--reference DIR]

Runs the agent's own decode-and-extract pipeline (as ``edge-agent decode`` does) over

- the generator's drive, ``--minutes`` of back-to-back scripted cycles (each with two
  ordinary stops at 0.22 g and 0.16 g, the one 0.45 g stop and four camera speed dropouts),
  once with both buses and once with the camera bus alone (speed only from 0x760). An event
  is *false* when no scripted event of its type starts within 1 s of it (``expected.json``);
- every real recording under ``--reference`` (default ``../shared/hw_reference``), camera bus
  only. These carry no scripted truth, so only harsh braking is judged: one is *false* when
  the recording's own 0x760 speed never falls by 0.3 g over any 1.5 s (an end-point
  difference on the raw readings, zeros that come back excluded) — an ordinary stop.

Prints a table of false events per hour by type, and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from edge_agent.assemble import build_pipeline, default_decoder
from edge_agent.feed import FixMerge, FrameFeed, each_channel_its_own_bus
from edge_agent.sources import ReplaySource
from protocol.records import Event

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (a worktree sits one level deeper).
REFERENCE = next(
    (
        p / "shared" / "hw_reference"
        for p in ROOT.parents
        if (p / "shared" / "hw_reference").is_dir()
    ),
    ROOT.parent / "shared" / "hw_reference",
)
MATCH_MS = 1_000
G = 9.80665
# The reference's own verdict on a stop: 0.3 g sustained over this long.
TRUTH_SPAN_MS = 1_500


def events_of(path: Path, channel: str | None) -> tuple[list[Event], float]:
    """Events of one recording (one bus or all) and its length in hours."""
    events: list[Event] = []
    source = ReplaySource(path, logged_channel=channel)
    pipeline = build_pipeline(None, path.parent, [], events.append)
    feed = FrameFeed(pipeline, each_channel_its_own_bus, FixMerge(()), default_decoder())
    first = last = None
    for frame in source.frames():
        first = frame.timestamp if first is None else first
        last = frame.timestamp
        feed.push(frame)
    hours = 0.0 if first is None or last is None else (last - first) / 3600
    return events, hours


def _ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def false_by_type(events: list[Event], expected: dict[str, Any]) -> Counter[str]:
    truth = [(e["type"], _ms(e["time"])) for e in expected["events"]]
    unmatched = list(truth)
    false: Counter[str] = Counter()
    for event in events:
        match = next(
            (t for t in unmatched if t[0] == event.type and abs(t[1] - event.time_ms) <= MATCH_MS),
            None,
        )
        if match is None:
            false[event.type] += 1
        else:
            unmatched.remove(match)
    return false


def camera_speed(path: Path) -> list[tuple[int, int]]:
    """The 0x760 speed readings of a camera recording, zeros that come back left out."""
    readings: list[tuple[int, int]] = []
    channel = "1" if path.suffix == ".blf" else None
    for frame in ReplaySource(path, logged_channel=channel).frames():
        if frame.arbitration_id == 0x760 and len(frame.data) >= 3:
            readings.append((round(frame.timestamp * 1000), frame.data[2]))
    kept: list[tuple[int, int]] = []
    for i, (t, v) in enumerate(readings):
        before = kept[-1][1] if kept else 0
        after = next((w for _, w in readings[i:] if w), 0)
        if v == 0 and before >= 6 and after >= 6:  # a dropout, not a stop
            continue
        kept.append((t, v))
    return kept


def truly_harsh(readings: list[tuple[int, int]], threshold_g: float) -> bool:
    j = 0
    for t, v in readings:
        while readings[j][0] < t - TRUTH_SPAN_MS:
            j += 1
        t0, v0 = readings[j]
        if t - t0 >= TRUTH_SPAN_MS * 0.9 and (v0 - v) / 3.6 / ((t - t0) / 1000) >= threshold_g * G:
            return True
    return False


def per_hour(counts: Counter[str], hours: float) -> dict[str, float]:
    return {k: round(n / hours, 2) for k, n in sorted(counts.items())} if hours else {}


def generated(minutes: float) -> list[dict[str, Any]]:
    from hw_fixtures.generate import generate_drive

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = generate_drive(Path(tmp), minutes=minutes, formats=("log",))
        expected = json.loads(paths["expected"].read_text("utf-8"))
        for label, channel in (("both buses", None), ("camera only", "can0")):
            events, hours = events_of(paths["log"], channel)
            false = false_by_type(events, expected)
            braking = [e for e in events if e.type == "harsh_braking"]
            rows.append(
                {
                    "recording": f"generator {minutes:g} min, {label}",
                    "hours": round(hours, 4),
                    "events": len(events),
                    "harsh_braking": len(braking),
                    "false": dict(false),
                    "false_per_hour": per_hour(false, hours),
                    "stops": len(expected["ordinary_stops"]),
                    "dropouts": len(expected["camera_speed"]["dropouts"]),
                }
            )
    return rows


def reference(directory: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(directory.glob("*")):
        if path.suffix not in (".log", ".blf", ".asc", ".trc", ".gz"):
            continue
        # A BLF holds every bus of the test car; the camera is its channel 1.
        events, hours = events_of(path, "1" if path.suffix == ".blf" else None)
        braking = [e for e in events if e.type == "harsh_braking"]
        harsh = truly_harsh(camera_speed(path), 0.3)
        false = Counter({"harsh_braking": 0 if harsh else len(braking)})
        rows.append(
            {
                "recording": path.name,
                "hours": round(hours, 4),
                "events": len(events),
                "by_type": dict(Counter(e.type for e in events)),
                "harsh_braking": len(braking),
                "speed_shows_harsh_braking": harsh,
                "false": dict(+false),
                "false_per_hour": per_hour(false, hours),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    args = parser.parse_args(argv)
    rows = generated(args.minutes)
    if args.reference.is_dir():
        rows += reference(args.reference)
    else:
        print(f"no reference recordings at {args.reference}", file=sys.stderr)
    for row in rows:
        hb = row["false_per_hour"].get("harsh_braking", 0.0)
        print(
            f"{row['recording']}: {row['hours'] * 60:.1f} min, {row['events']} events, "
            f"{row['harsh_braking']} harsh braking; false harsh braking {hb}/h; "
            f"false by type per hour {row['false_per_hour'] or 'none'}"
        )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
