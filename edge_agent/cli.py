"""``edge-agent`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon_kit.logs import LEVELS, configure_logging
from edge_agent.assemble import build_pipeline, default_decoder
from edge_agent.camera import CAMERA_MODELS, DEFAULT_CAMERA_MODEL
from edge_agent.clock import Clock, SystemClock
from edge_agent.config import load_config
from edge_agent.errors import AgentError
from edge_agent.feed import FixMerge, FrameFeed, each_channel_its_own_bus, route_by_config
from edge_agent.nmea import read_nmea
from edge_agent.pipeline import Pipeline
from edge_agent.reporting import agent_version
from edge_agent.sources import ReadStats, ReplaySource
from protocol.records import Event

EXIT_OK = 0
EXIT_BAD_INPUT = 1
EXIT_USAGE = 2


def iso_ms(time_ms: int) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-03-02T07:30:00.125Z``."""
    return datetime.fromtimestamp(time_ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def event_json(event: Event) -> dict[str, Any]:
    fix = event.fix
    return {
        "type": event.type,
        "time": iso_ms(event.time_ms),
        "speed_kmh": event.speed_kmh,
        "lat": None if fix is None else fix.lat,
        "lon": None if fix is None else fix.lon,
        "bus": None if event.source is None else event.source.bus,
        "can_id": None if event.source is None else f"0x{event.source.can_id:X}",
        **event.attrs,
    }


def _print_event(event: Event) -> None:
    sys.stdout.write(json.dumps(event_json(event), separators=(",", ":")) + "\n")


def decode(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config)) if args.config else None
    if config is not None and args.camera is not None:
        # The flag wins: a recording is often decoded with another taxi's config.
        camera_section = config.camera.model_copy(update={"model": args.camera})
        config = config.model_copy(update={"camera": camera_section})
    camera = (
        config.camera.camera_model
        if config is not None
        else CAMERA_MODELS[args.camera or DEFAULT_CAMERA_MODEL]
    )
    config_dir = Path(args.config).resolve().parent if args.config else Path.cwd()
    source = ReplaySource(Path(args.file), logged_channel=args.channel)
    buses = [b.name for b in config.bus] if config is not None else []
    pipeline = build_pipeline(config, config_dir, buses, _print_event, camera)
    fixes = FixMerge(read_nmea(Path(args.nmea)) if args.nmea else ())
    if config is None:
        feed = FrameFeed(pipeline, each_channel_its_own_bus, fixes, default_decoder(camera))
    else:
        feed = FrameFeed(pipeline, route_by_config(config.bus), fixes)
    push = feed.push
    for frame in source.frames():
        push(frame)
    sys.stdout.flush()
    code = _decode_summary(args.file, source.stats, pipeline, camera.name)
    missing = source.missing_channel()
    if missing is not None:
        print(f"edge-agent: {missing}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return code


def _decode_summary(file: str, stats: ReadStats, pipeline: Pipeline, camera: str) -> int:
    summary = {
        "file": file,
        "camera": camera,
        "frames": stats.frames,
        "events": len(pipeline.events),
        "buses": {k: vars(v) for k, v in pipeline.counters.items()},
        "malformed_lines": stats.malformed_lines,
    }
    print(json.dumps({"summary": summary}), file=sys.stderr)
    if stats.malformed_lines:
        print(
            f"edge-agent: {file}:{stats.first_bad_line}: malformed line "
            f"({stats.first_bad_reason}); {stats.malformed_lines} line(s) skipped",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if stats.frames == 0:
        print(f"edge-agent: {file}: no CAN frames in recording", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


# aiosqlite names each connection's worker thread after this function.
_SQLITE_WORKER = "_connection_worker_thread"
_SQLITE_WORKER_GRACE_S = 2.0


async def _settle_sqlite_workers() -> None:
    """Let aiosqlite worker threads still finishing reach the loop before it closes.

    When ``aiosqlite.connect`` fails it stops its worker thread without waiting for it;
    the thread then resolves a future on this loop, and if the loop is already closed
    it dies with an "Event loop is closed" traceback after the one-line error.
    """
    deadline = time.monotonic() + _SQLITE_WORKER_GRACE_S
    for thread in threading.enumerate():
        if _SQLITE_WORKER in thread.name and thread is not threading.current_thread():
            await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))
    # One more turn so the callbacks those threads scheduled run on an open loop.
    await asyncio.sleep(0)


async def _settled(coro: Coroutine[Any, Any, int]) -> int:
    try:
        return await coro
    finally:
        await _settle_sqlite_workers()


def _run_async(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where available (the gateway's event loop), else asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(_settled(coro))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_settled(coro))


def run(args: argparse.Namespace) -> int:
    from daemon_kit.sdnotify import Notifier
    from edge_agent.daemon import run_agent
    from edge_agent.health import config_hash

    config_path = Path(args.config)
    config = load_config(config_path)
    # The environment is read here, once: systemd's notify socket.
    return _run_async(
        run_agent(
            config,
            config_path.resolve().parent,
            None,
            notifier=Notifier.from_env(os.environ),
            config_hash=config_hash(config_path),
        )
    )


def replay(args: argparse.Namespace) -> int:
    from edge_agent.daemon import ReplayJob, run_agent
    from edge_agent.health import config_hash

    config_path = Path(args.config)
    config = load_config(config_path)
    source = Path(args.file)
    if not source.is_file():
        raise AgentError(f"{source}: recording not found")
    if args.speed < 0 or args.timeout <= 0:
        raise AgentError("--speed must be >= 0 and --timeout > 0")
    job = ReplayJob(source, args.channel, args.speed, args.timeout)
    return _run_async(
        run_agent(config, config_path.resolve().parent, job, config_hash=config_hash(config_path))
    )


def status(args: argparse.Namespace, clock: Clock | None = None) -> int:
    from edge_agent.daemon import outbox_path
    from edge_agent.outbox_status import format_human, read_status

    config_path = Path(args.config)
    config = load_config(config_path)
    now_ms = (clock or SystemClock()).raw_wall_ms()
    report = read_status(
        outbox_path(config, config_path.resolve().parent), now_ms, config.outbox.reserve_bytes
    )
    if args.human:
        print(format_human(report, now_ms))
    else:
        print(json.dumps(report, indent=2, sort_keys=True))
    return EXIT_OK


def _add_decode(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("decode", help="print the events found in a CAN recording as JSON lines")
    p.add_argument(
        "file",
        help="recording: .log (candump -L), .asc, .blf, .trc, .csv (SavvyCAN/GVRET) or .mf4 "
        "(MDF4, with the mdf extra), optionally .gz",
    )
    p.add_argument(
        "--channel", help="decode only this logged channel (e.g. can0, or 1 for ASC/BLF/CSV/MF4)"
    )
    p.add_argument("--config", help="agent config (TOML) giving buses and DBCs")
    p.add_argument(
        "--camera",
        choices=sorted(CAMERA_MODELS),
        help="camera model, its 0x700 layout and sound table (default: the config's, "
        f"else {DEFAULT_CAMERA_MODEL})",
    )
    p.add_argument("--nmea", help="NMEA track (RMC/GGA) recorded with the drive, for positions")
    p.set_defaults(func=decode)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description="Taxi ADAS edge agent")
    parser.add_argument("--version", action="version", version=f"%(prog)s {agent_version()}")
    parser.add_argument(
        "--log-level",
        default="warning",
        type=str.lower,
        choices=LEVELS,
        help="logging level (default warning)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_decode(sub)

    p = sub.add_parser("run", help="run the agent in the foreground until SIGTERM/SIGINT")
    p.add_argument("--config", required=True, help="agent config (TOML)")
    p.set_defaults(func=run)

    p = sub.add_parser(
        "replay",
        help="send a recording through the whole agent; exit 0 once every batch is acknowledged",
    )
    p.add_argument("file", help="recording (as for decode)")
    p.add_argument("--config", required=True, help="agent config (TOML)")
    p.add_argument("--channel", help="replay only this logged channel")
    p.add_argument(
        "--speed", type=float, default=1.0, help="times recorded pace; 0 = as fast as possible"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for end-to-end acks after the last frame (default 120)",
    )
    p.set_defaults(func=replay)

    p = sub.add_parser(
        "status",
        help="print the outbox status as JSON, or with --human as aligned lines (works offline)",
        description="The outbox status read from the outbox file, so it works while the agent "
        "is stopped: JSON by default, --human for a headline and aligned lines.",
    )
    p.add_argument("--config", required=True, help="agent config (TOML)")
    p.add_argument(
        "--human",
        action="store_true",
        help="a headline and aligned lines from the last health snapshot, instead of JSON",
    )
    p.set_defaults(func=status)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level.upper())
    try:
        result: int = args.func(args)
    except AgentError as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # e.g. piped into `head`
        return EXIT_OK
    return result


if __name__ == "__main__":
    raise SystemExit(main())
