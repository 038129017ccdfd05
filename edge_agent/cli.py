"""``edge-agent`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge_agent.assemble import build_pipeline
from edge_agent.config import AgentConfig, load_config
from edge_agent.errors import AgentError
from edge_agent.logs import configure_logging
from edge_agent.pipeline import Pipeline
from edge_agent.sources import ReplaySource
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


def _route(config: AgentConfig | None, channel: str | None) -> dict[str, str] | None:
    """Logged channel -> bus name; None means every channel is its own bus."""
    if config is None:
        return None
    with_channel = {b.logged_channel: b.name for b in config.bus if b.logged_channel is not None}
    if with_channel:
        return with_channel
    if len(config.bus) == 1 and channel is not None:
        return {channel: config.bus[0].name}
    if len(config.bus) == 1:
        return {"*": config.bus[0].name}
    raise AgentError(
        "config has several buses but none names its 'logged_channel'; "
        "set bus[].logged_channel to map the recording's channels"
    )


def decode(args: argparse.Namespace) -> int:
    config = load_config(Path(args.config)) if args.config else None
    config_dir = Path(args.config).resolve().parent if args.config else Path.cwd()
    source = ReplaySource(Path(args.file), logged_channel=args.channel)
    route = _route(config, args.channel)
    pipeline: Pipeline | None = None
    if config is not None:
        pipeline = build_pipeline(config, config_dir, [b.name for b in config.bus], _print_event)
    for frame in source.frames():
        channel = str(frame.channel)
        if route is None:
            bus = channel
        else:
            bus_or_none = route.get(channel, route.get("*"))
            if bus_or_none is None:
                continue
            bus = bus_or_none
        if pipeline is None:
            pipeline = build_pipeline(None, config_dir, [bus], _print_event)
        elif bus not in pipeline.counters:
            pipeline.add_bus(bus, next(iter(pipeline.decoders.values())))
        pipeline.on_frame(bus, frame)
    sys.stdout.flush()
    summary = {
        "file": args.file,
        "frames": source.stats.frames,
        "events": 0 if pipeline is None else len(pipeline.events),
        "buses": {} if pipeline is None else {k: vars(v) for k, v in pipeline.counters.items()},
        "malformed_lines": source.stats.malformed_lines,
    }
    print(json.dumps({"summary": summary}), file=sys.stderr)
    if source.stats.malformed_lines:
        print(
            f"edge-agent: {args.file}:{source.stats.first_bad_line}: malformed line "
            f"({source.stats.first_bad_reason}); {source.stats.malformed_lines} line(s) skipped",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if source.stats.frames == 0:
        print(f"edge-agent: {args.file}: no CAN frames in recording", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-agent", description="Taxi ADAS edge agent")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("decode", help="print the events found in a CAN recording as JSON lines")
    p.add_argument("file", help="recording: .log (candump -L), .asc, .blf or .trc, optionally .gz")
    p.add_argument(
        "--channel", help="decode only this logged channel (e.g. can0, or 1 for ASC/BLF)"
    )
    p.add_argument("--config", help="agent config (TOML) giving buses and DBCs")
    p.set_defaults(func=decode)
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
