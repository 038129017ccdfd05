"""``cloud-collector`` command line: ``cloud-collector run [--config FILE]`` and
``cloud-collector export`` (``cloud_collector.export``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

from cloud_collector.config import CollectorConfig, config_secrets, load_config
from cloud_collector.errors import CollectorError
from cloud_collector.secrets import Redactor
from cloud_collector.tokens_cli import add_token_commands
from daemon_kit.logs import configure_logging


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config) if args.config is not None else CollectorConfig()
    configure_logging(cfg.log.level)
    redactor = Redactor(config_secrets(cfg))
    redactor.install()  # no password in any log line, whoever logs it
    from cloud_collector import service  # imported late: the store backends load here

    try:
        try:
            import uvloop
        except ImportError:  # uvloop is optional (not on every platform)
            asyncio.run(service.run(cfg))
        else:
            uvloop.run(service.run(cfg))
    except CollectorError as exc:
        # A driver's message may repeat a connection string: the line printed has none.
        raise CollectorError(redactor(str(exc))) from None
    return 0


DISTRIBUTION = "taxi-cloud-collector"


def installed_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def endpoint_lines() -> list[str]:
    """``METHOD path  summary`` for every route the HTTP API serves."""
    from fastapi.routing import APIRoute  # imported late: only --help needs the web stack

    from cloud_collector.api import ROUTERS
    from cloud_collector.dashboard import router as dashboard

    lines = []
    for router in (*ROUTERS, dashboard):
        for route in router.routes:
            if isinstance(route, APIRoute):
                doc = (route.summary or route.endpoint.__doc__ or "").strip().splitlines()
                summary = doc[0] if doc else "the operator dashboard"
                methods = ",".join(sorted(route.methods or ()))
                lines.append(f"  {methods} {route.path:<38} {summary}")
    return lines


def config_lines() -> list[str]:
    """``[section] key, key, ...`` for every key a config file may set."""
    lines = []
    for name, section in CollectorConfig.model_fields.items():
        model = section.annotation
        keys = ", ".join(getattr(model, "model_fields", {}))
        lines.append(
            textwrap.fill(keys, 92, initial_indent=f"  [{name}] ", subsequent_indent="    ")
        )
    return lines


class _Parser(argparse.ArgumentParser):
    """Its help lists the HTTP endpoints and the config keys, built when asked for."""

    def format_help(self) -> str:
        return "\n".join(
            [
                super().format_help(),
                "HTTP endpoints (OpenAPI at /openapi.json):",
                *endpoint_lines(),
                "",
                "config sections and keys (examples/collector.toml; omitted keys take defaults):",
                *config_lines(),
                "",
            ]
        )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cloud-collector", description="Taxi ADAS collector")
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=argparse.ArgumentParser)
    p = sub.add_parser("run", help="ingest from MQTT and serve the HTTP API")
    p.add_argument("--config", type=Path, help="TOML file; omitted keys take the embedded defaults")
    p.set_defaults(func=_run)
    add_export_parser(sub)
    add_token_commands(sub)
    return parser


def add_export_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write events and road conditions for offline analysis",
        description="Events and road conditions of the configured store, streamed to"
        " GeoParquet (a directory: events.parquet, road_conditions.parquet; needs the"
        " 'export' extra) or GeoPackage (one file, two layers).",
    )
    p.add_argument("--config", type=Path, help="TOML file; omitted keys take the embedded defaults")
    p.add_argument("--format", required=True, help="geoparquet or geopackage")
    p.add_argument("--since", help="ISO 8601 time, inclusive (no zone: UTC)")
    p.add_argument("--until", help="ISO 8601 time, exclusive (no zone: UTC)")
    p.add_argument("--out", type=Path, required=True, help="the directory or .gpkg file")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from cloud_collector import export  # imported late: the store backends load here

    try:
        span = export.parse_span(args.format, args.since, args.until)
    except ValueError as exc:
        print(f"cloud-collector export: {exc}", file=sys.stderr)
        return 2
    cfg = load_config(args.config) if args.config is not None else CollectorConfig()
    written = export.asyncio_run(cfg.store.resolved_url(Path.cwd()), args.format, args.out, span)
    print(", ".join(f"{layer}: {n} rows" for layer, n in written.items()) + f" -> {args.out}")
    return 0


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
