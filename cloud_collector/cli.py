"""``cloud-collector`` command line: ``cloud-collector run [--config FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from cloud_collector.config import CollectorConfig, load_config
from cloud_collector.errors import CollectorError
from daemon_kit.logs import configure_logging


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config) if args.config is not None else CollectorConfig()
    configure_logging(cfg.log.level)
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
