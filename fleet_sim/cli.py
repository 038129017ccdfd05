"""The ``fleet-sim`` command: ``run`` a city's fleet, ``score`` what the collector found."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import sys
import time
from pathlib import Path

from edge_agent.errors import ConfigError
from edge_agent.uplink import UplinkSettings, tls_context
from fleet_sim import runner
from fleet_sim.truth import HOUR_MS, UTC_OFFSET_H, Plan, Truth, TruthError, generate, load, save
from protocol.ids import is_valid_id

MAX_TAXIS = 100_000


class UsageError(ValueError):
    """A bad option: the message names it."""


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise UsageError(f"--{name} must be > 0, not {value}")
    return value


def parse_broker(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--broker must be HOST:PORT, not {value!r}")
    return host, int(port)


def default_start_ms(hours: float, now_ms: int) -> int:
    """The latest 07:00 local time from which the whole span lies in the past."""
    local_day = (now_ms + UTC_OFFSET_H * HOUR_MS) // (24 * HOUR_MS) * (24 * HOUR_MS)
    start = local_day + 7 * HOUR_MS - UTC_OFFSET_H * HOUR_MS
    while start + hours * HOUR_MS > now_ms:
        start -= 24 * HOUR_MS
    return start


def parse_start(value: str | None, hours: float) -> int:
    if value is None:
        return default_start_ms(hours, int(time.time() * 1000))
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--start must be an ISO 8601 time, not {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    ms = int(when.timestamp() * 1000)
    if ms % HOUR_MS:
        raise UsageError(f"--start must be on a whole hour, not {value!r}")
    return ms


def _truth(args: argparse.Namespace) -> Truth:
    if args.truth is not None:
        return load(Path(args.truth))
    start = parse_start(args.start, args.hours)
    plan = Plan(args.seed, args.taxis, args.hours, start, args.hazard_factor)
    return generate(plan)


def _base_settings(args: argparse.Namespace) -> UplinkSettings:
    from edge_agent.config import MqttConfig

    host, port = parse_broker(args.broker)
    mqtt = MqttConfig.model_validate(
        {"host": host, "port": port, "tls_ca": args.tls_ca, "tls_cert": args.tls_cert,
         "tls_key": args.tls_key}
    )  # fmt: skip
    try:
        tls = tls_context(mqtt, Path.cwd())
    except ConfigError as exc:  # named by the config key; here the options are the keys
        text = str(exc).replace("key 'mqtt.tls_", "option '--tls-")
        raise UsageError(text.replace("'mqtt.tls_", "'--tls-")) from None
    return UplinkSettings(
        fleet_id=args.fleet,
        vehicle_id="t0000",
        host=host,
        port=port,
        reconnect_min_s=args.reconnect_min_s,
        reconnect_max_s=max(args.reconnect_min_s, args.reconnect_max_s),
        tls=tls,
    )


def cmd_run(args: argparse.Namespace) -> int:
    if not 1 <= args.taxis <= MAX_TAXIS:
        raise UsageError(f"--taxis must be 1..{MAX_TAXIS}, not {args.taxis}")
    _positive("hours", args.hours)
    _positive("speed", args.speed)
    _positive("timeout", args.timeout)
    if not is_valid_id(args.fleet):
        raise UsageError(f"--fleet {args.fleet!r} is not a valid fleet id")
    base = _base_settings(args)
    truth = _truth(args)
    if args.truth is not None:  # the file's scenario, this run's span
        truth = dataclasses.replace(truth, hours=args.hours)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    processes = max(1, min(args.processes or os.cpu_count() or 1, args.taxis))
    save(truth, out / "truth.json")  # first: score may look while the run goes on
    job = runner.Job(truth, args.taxis, args.speed, out, args.fleet, base, time.time(), processes)
    started = time.monotonic()
    done, progress = runner.run(job, args.timeout)
    data = runner.summary(job, progress, time.monotonic() - started)
    runner.print_summary(data)
    if not done:
        missing = args.taxis - progress.total().done
        print(
            f"fleet-sim: --timeout {args.timeout:g} s:"
            f" {missing} taxi(s) not acknowledged end to end",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from fleet_sim.score import score

    token = args.token or os.environ.get("COLLECTOR_TOKEN") or None
    return score(load(Path(args.truth)), args.api, token)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fleet-sim", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="drive N simulated taxis through the real edge code")
    r.add_argument("--taxis", type=int, required=True)
    r.add_argument("--hours", type=float, required=True, help="simulated hours")
    r.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    r.add_argument("--broker", required=True, help="HOST:PORT of the MQTT broker")
    r.add_argument("--out", required=True, help="directory for the outboxes and truth.json")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--truth", help="plant this truth file's scenario instead of a generated one")
    r.add_argument("--start", help="simulated start, ISO 8601 on a whole hour (default: 07:00 KST)")
    r.add_argument("--timeout", type=float, default=7 * 86_400.0, help="seconds of real time")
    r.add_argument("--processes", type=int, default=0, help="worker processes (default: CPUs)")
    r.add_argument("--fleet", default="daegu")
    r.add_argument(
        "--hazard-factor",
        type=float,
        default=10.0,
        help="a hazard site's situation rate over the background's (default 10)",
    )
    r.add_argument("--reconnect-min-s", type=float, default=1.0)
    r.add_argument("--reconnect-max-s", type=float, default=120.0)
    for name in ("ca", "cert", "key"):
        r.add_argument(f"--tls-{name}", dest=f"tls_{name}")
    s = sub.add_parser("score", help="compare the collector's API with a run's truth.json")
    s.add_argument("truth")
    s.add_argument("--api", required=True, help="the collector's base URL")
    s.add_argument("--token", help="bearer token (default: env COLLECTOR_TOKEN)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return cmd_run(args) if args.command == "run" else cmd_score(args)
    except (UsageError, TruthError, ConfigError) as exc:
        print(f"fleet-sim: {exc}", file=sys.stderr)
        return 2
