"""``cloud-collector`` command line: ``cloud-collector run [--config FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import structlog

from cloud_collector.config import CollectorConfig, load_config
from cloud_collector.errors import CollectorError


def _configure_logging(level: str) -> None:
    """structlog once, here at the entry point: JSON lines to stdout (journald keeps them);
    modules log through stdlib loggers, which structlog's formatter renders."""
    renderer = structlog.processors.JSONRenderer()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config) if args.config is not None else CollectorConfig()
    _configure_logging(cfg.log.level)
    from cloud_collector import service  # imported late: the store backends load here

    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on every platform)
        asyncio.run(service.run(cfg))
    else:
        uvloop.run(service.run(cfg))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cloud-collector", description="Taxi ADAS collector")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="ingest from MQTT and serve the HTTP API")
    p.add_argument("--config", type=Path, help="TOML file; omitted keys take the embedded defaults")
    p.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except CollectorError as exc:
        print(f"cloud-collector: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
