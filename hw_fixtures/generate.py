"""Deterministic two-bus drive recording with matching GNSS track and ground truth.

    .venv/bin/python -m hw_fixtures.generate [--out DIR] [--minutes M] [--full-load]
                                             [--track NAME] [--seed N] [--formats log,asc,blf]

Writes into ``DIR`` (default ``hw_fixtures/drives``): ``drive.log`` (candump -L),
``drive.asc.gz`` (Vector ASC), ``drive.blf`` (Vector BLF), ``drive.nmea`` (GGA + RMC at
1 Hz) and ``drive.expected.json`` (scripted events and frame counts). ``can0`` is the
Mobileye camera bus, ``can1`` the taxi's own CAN. The same arguments always give
byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

from hw_fixtures import script
from hw_fixtures.buses import (
    CAMERA,
    CHANNEL_NAMES,
    MOBILEYE_DBC,
    VEHICLE,
    VEHICLE_DBC,
    Codec,
    VehicleEncoder,
    camera_frames,
    merged,
    vehicle_frames,
    vehicle_periodics,
)
from hw_fixtures.camera import CameraModel
from hw_fixtures.drive import Drive
from hw_fixtures.events import EventRecorder, iso_utc
from hw_fixtures.route import TRACKS, nmea_fix
from hw_fixtures.writers import AscGzWriter, BlfWriter, LogWriter

START_EPOCH_S: Final = 1_772_436_600  # 2026-03-02T07:30:00Z (16:30 in Seoul)
DEFAULT_OUT: Final = Path(__file__).resolve().parent / "drives"
FORMATS: Final = ("log", "asc", "blf")
FILE_NAMES: Final = {
    "log": "drive.log",
    "asc": "drive.asc.gz",
    "blf": "drive.blf",
    "nmea": "drive.nmea",
    "expected": "drive.expected.json",
}
GEOID_SEPARATION_M: Final = 24.6


class _Writer(Protocol):
    def write(self, frame: tuple[int, int, int, bytes]) -> None: ...

    def close(self) -> None: ...


def generate_drive(
    out_dir: str | Path = DEFAULT_OUT,
    *,
    minutes: float | None = None,
    full_load: bool = False,
    track: str = "seoul",
    seed: int = 1,
    formats: Sequence[str] | None = None,
    start_epoch_s: int = START_EPOCH_S,
) -> dict[str, Path]:
    """Write one recording; returns the paths by kind (log, asc, blf, nmea, expected).

    ``minutes`` None means one scripted cycle (106 s); longer drives repeat the cycle while
    the route goes on. ``full_load`` fills both buses (13 obstacles, every camera frame, the
    vehicle bus at about 3,700 frames/s) and defaults ``formats`` to ``("log",)``.
    """
    if formats is None:
        formats = ("log",) if full_load else FORMATS
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown format(s) {sorted(unknown)}; choose from {FORMATS}")
    if track not in TRACKS:
        raise ValueError(f"unknown track {track!r}; choose one of {', '.join(TRACKS)}")
    duration_s = script.CYCLE_S if minutes is None else float(minutes) * 60.0
    if not duration_s > 0:
        raise ValueError("minutes must be positive")
    out = Path(out_dir)
    if full_load and out.resolve() == DEFAULT_OUT:
        raise ValueError(f"write full-load recordings elsewhere (--out), not into {DEFAULT_OUT}")
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / FILE_NAMES[kind] for kind in (*formats, "nmea", "expected")}

    start_us = start_epoch_s * 1_000_000
    drive = Drive(duration_s=duration_s, track=track)
    recorder = EventRecorder(start_us)
    anomalies: list[dict[str, Any]] = []
    camera_codec = Codec(MOBILEYE_DBC)
    vehicle_codec = Codec(VEHICLE_DBC)
    encoder = VehicleEncoder(drive, vehicle_codec, recorder)
    vehicle_rng = random.Random(seed * 7919 + 2)
    periodics = vehicle_periodics(encoder, vehicle_codec, vehicle_rng, full_load=full_load)
    camera = camera_frames(
        drive,
        CameraModel(drive, full_load=full_load, rng=random.Random(seed * 7919 + 3)),
        camera_codec,
        start_us=start_us,
        rng=random.Random(seed * 7919 + 1),
        recorder=recorder,
        anomalies=anomalies,
    )
    vehicle = vehicle_frames(
        periodics, encoder, start_us=start_us, duration_s=duration_s, rng=vehicle_rng
    )

    writers: list[_Writer] = []
    if "log" in formats:
        writers.append(LogWriter(paths["log"]))
    if "asc" in formats:
        writers.append(AscGzWriter(paths["asc"], start_epoch_s=start_epoch_s))
    if "blf" in formats:
        writers.append(BlfWriter(paths["blf"]))
    counts = [0, 0]
    first_us = last_us = 0
    try:
        for frame in merged(camera, vehicle):
            counts[frame[1]] += 1
            if not first_us:
                first_us = frame[0]
            last_us = frame[0]
            for w in writers:
                w.write(frame)
    finally:
        for w in writers:
            w.close()

    _write_nmea(paths["nmea"], drive, seed, start_epoch_s)
    expected = _expected(
        start_epoch_s=start_epoch_s,
        drive=drive,
        track=track,
        seed=seed,
        full_load=full_load,
        duration_s=duration_s,
        counts=counts,
        first_us=first_us,
        last_us=last_us,
        events=recorder.events(),
        anomalies=anomalies,
        files={k: p.name for k, p in paths.items()},
    )
    paths["expected"].write_text(json.dumps(expected, indent=2) + "\n", encoding="utf-8")
    return paths


def _write_nmea(path: Path, drive: Drive, seed: int, start_epoch_s: int) -> None:
    """GGA + RMC every whole second, position and velocity from the drive itself."""
    phase = (seed % 97) * 0.37
    lines = []
    for sec in range(math.floor(drive.duration_s) + 1):
        t = float(sec)
        pose = drive.pose(t)
        # smooth urban-canyon error of a metre or two
        err_e = 1.1 * math.sin(t / 7.3 + phase) + 0.5 * math.sin(t / 2.9 + 2 * phase)
        err_n = 0.9 * math.sin(t / 6.1 + 1 + phase) + 0.4 * math.sin(t / 3.7 + phase)
        lat, lon = drive.path.to_latlon(pose.x + err_e, pose.y + err_n)
        when = datetime.fromtimestamp(start_epoch_s + sec, tz=UTC)
        lines.append(
            nmea_fix(
                hhmmss=f"{when:%H%M%S}",
                ddmmyy=f"{when:%d%m%y}",
                lat=lat,
                lon=lon,
                speed_mps=drive.speed(t),
                course_deg=pose.course_deg,
                sats=9 + (sec // 17 + seed) % 5,
                hdop=0.8 + 0.1 * ((sec // 13) % 5),
                alt_m=38.0 + 1.5 * math.sin(t / 40.0),
                geoid_m=GEOID_SEPARATION_M,
            )
        )
    with path.open("w", encoding="ascii", newline="") as f:
        f.write("".join(lines))


def _expected(
    *,
    start_epoch_s: int,
    drive: Drive,
    track: str,
    seed: int,
    full_load: bool,
    duration_s: float,
    counts: list[int],
    first_us: int,
    last_us: int,
    events: list[dict[str, Any]],
    anomalies: list[dict[str, Any]],
    files: dict[str, str],
) -> dict[str, Any]:
    start_us = start_epoch_s * 1_000_000
    end_us = start_us + round(duration_s * 1e6)
    start_lat, start_lon = drive.path.to_latlon(*_xy(drive, 0.0))
    end_lat, end_lon = drive.path.to_latlon(*_xy(drive, duration_s))
    return {
        "description": "Scripted ground truth of a generated taxi drive (hw_fixtures.generate)",
        "start": iso_utc(start_us),
        "end": iso_utc(end_us),
        "start_epoch_s": start_epoch_s,
        "duration_s": duration_s,
        "seed": seed,
        "full_load": full_load,
        "cycles": math.ceil(duration_s / script.CYCLE_S),
        "cycle_s": script.CYCLE_S,
        "track": {
            "name": track,
            "description": TRACKS[track].description,
            "start": [round(start_lat, 6), round(start_lon, 6)],
            "end": [round(end_lat, 6), round(end_lon, 6)],
            "distance_m": round(drive.distance(duration_s), 1),
        },
        "buses": {
            CHANNEL_NAMES[CAMERA]: {
                "role": "camera",
                "dbc": MOBILEYE_DBC.name,
                "blf_asc_channel": CAMERA + 1,
                "python_can_channel": {"log": CHANNEL_NAMES[CAMERA], "asc": CAMERA, "blf": CAMERA},
                "frames": counts[CAMERA],
                "frames_per_s": round(counts[CAMERA] / duration_s, 1),
            },
            CHANNEL_NAMES[VEHICLE]: {
                "role": "vehicle",
                "dbc": VEHICLE_DBC.name,
                "blf_asc_channel": VEHICLE + 1,
                "python_can_channel": {
                    "log": CHANNEL_NAMES[VEHICLE],
                    "asc": VEHICLE,
                    "blf": VEHICLE,
                },
                "frames": counts[VEHICLE],
                "frames_per_s": round(counts[VEHICLE] / duration_s, 1),
            },
        },
        "frame_counts": {
            CHANNEL_NAMES[CAMERA]: counts[CAMERA],
            CHANNEL_NAMES[VEHICLE]: counts[VEHICLE],
            "total": sum(counts),
        },
        "first_frame": iso_utc(first_us) if first_us else None,
        "last_frame": iso_utc(last_us) if last_us else None,
        "events": events,
        "camera_anomalies": anomalies,
        "camera_speed": _camera_speed_truth(drive, duration_s),
        "ordinary_stops": _ordinary_stops(duration_s),
        "files": files,
    }


def _cycle_starts(duration_s: float) -> list[float]:
    return [c * script.CYCLE_S for c in range(math.ceil(duration_s / script.CYCLE_S))]


def _camera_speed_truth(drive: Drive, duration_s: float) -> dict[str, Any]:
    """How the camera's speed echo differs from the car's speed: steps, holds, dropouts."""
    dropouts = [
        {
            "t_s": round(c + t0, 6),
            "end_t_s": round(c + t0 + length, 6),
            "speed_kmh": round(drive.speed(c + t0) * 3.6, 1),
        }
        for c in _cycle_starts(duration_s)
        for t0, length in script.CAMERA_SPEED_DROPOUTS
        if c + t0 < duration_s
    ]
    return {
        "resolution_kmh": 1,
        "refresh_s": list(script.CAMERA_SPEED_REFRESH_S),
        "dropouts": dropouts,
    }


def _ordinary_stops(duration_s: float) -> list[dict[str, Any]]:
    """Stops to a standstill at an ordinary deceleration: no harsh braking may come of them."""
    return [
        {
            "t_s": round(c + stop[0], 6),
            "end_t_s": round(c + script.stop_end(stop), 6),
            "from_kmh": stop[1],
            "decel_g": stop[2],
        }
        for c in _cycle_starts(duration_s)
        for stop in (script.QUEUE_STOP, script.END_STOP)
        if c + stop[0] < duration_s
    ]


def _xy(drive: Drive, t: float) -> tuple[float, float]:
    pose = drive.pose(t)
    return pose.x, pose.y


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hw_fixtures.generate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--minutes", type=float, default=None, help="drive length (default: one 106 s cycle)"
    )
    parser.add_argument("--full-load", action="store_true", help="both buses at full load")
    parser.add_argument("--track", choices=sorted(TRACKS), default="seoul")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--start",
        type=int,
        default=START_EPOCH_S,
        help=f"first frame's time, Unix seconds (default {START_EPOCH_S})",
    )
    parser.add_argument(
        "--formats",
        default=None,
        help="comma-separated subset of log,asc,blf (default: all; log only with --full-load)",
    )
    args = parser.parse_args(argv)
    formats = None if args.formats is None else [f for f in args.formats.split(",") if f]
    began = time.perf_counter()
    try:
        paths = generate_drive(
            args.out,
            minutes=args.minutes,
            full_load=args.full_load,
            track=args.track,
            seed=args.seed,
            formats=formats,
            start_epoch_s=args.start,
        )
    except ValueError as exc:
        parser.error(str(exc))
    elapsed = time.perf_counter() - began
    expected = json.loads(paths["expected"].read_text(encoding="utf-8"))
    counts = expected["frame_counts"]
    print(
        f"{expected['duration_s']:.0f} s drive, {counts['total']} frames "
        f"(can0 {counts['can0']}, can1 {counts['can1']}), "
        f"{len(expected['events'])} events, {elapsed:.1f} s"
    )
    for kind, path in paths.items():
        print(f"  {kind:8} {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
