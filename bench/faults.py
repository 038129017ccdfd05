"""Fault scenarios at full size, with the ledger's figures.

    python -m bench.faults                         # every scenario, full size
    python -m bench.faults partition_refuse stall  # some of them
    python -m bench.faults --size suite            # the sizes tests/integration/faults/ runs
    python -m bench.faults --set partition_s=60    # one size figure changed
    python -m bench.faults --list

Each scenario starts real programs (mosquitto, the collector, PostgreSQL, edge-agent
replays), causes its fault, waits until every replay is acknowledged end to end, and
prints one line: records produced, stored, lost, doubled, reordered, the time to drain
after the fault ended, and scenario figures. ``--json FILE`` appends each outcome as a
JSON line. Exit status 1 when any scenario lost, doubled or reordered anything or failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness.faults import scenarios as sc
from harness.faults.proxy import BLACKHOLE, REFUSE

Scenario = Callable[[Path, sc.Size], sc.Outcome]

SCENARIOS: dict[str, Scenario] = {
    "partition_refuse": lambda d, s: sc.partition(d, s, REFUSE),
    "partition_blackhole": lambda d, s: sc.partition(d, s, BLACKHOLE),
    "stall": sc.stall,
    "latency_jitter_drops": sc.bad_link,
    "bandwidth_2kBps_backlog": sc.slow_link_backlog,
    "broker_restart_persistent": lambda d, s: sc.broker_restart(d, s, persistence=True),
    "broker_restart_volatile": lambda d, s: sc.broker_restart(d, s, persistence=False),
    "collector_sigstop": sc.collector_sigstop,
    "postgres_stopped": sc.postgres_stopped,
    "agent_killed": sc.agent_killed,
    "clock_jump": sc.clock_jump,
    "small_disk_outbox": sc.small_disk,
    "two_agents_one_vehicle": sc.two_agents_one_vehicle,
}
# Their verdict is not "nothing lost": health follows a stepped clock; a full disk may
# evict bulk records (counted); the two agents' records interleave by design.
HEALTH_FOLLOWS_CLOCK = {"clock_jump"}


def _size(name: str, overrides: list[str]) -> sc.Size:
    size = sc.BENCH if name == "bench" else sc.SUITE
    changes: dict[str, object] = {}
    fields = {f.name: f for f in dataclasses.fields(sc.Size)}
    for item in overrides:
        key, _, value = item.partition("=")
        if key not in fields or key == "name":
            raise SystemExit(f"bench.faults: --set {item}: unknown size field {key!r}")
        try:
            changes[key] = int(value) if fields[key].type in ("int", int) else float(value)
        except ValueError:
            raise SystemExit(f"bench.faults: --set {item}: not a number") from None
    return dataclasses.replace(size, **changes)  # type: ignore[arg-type]


def _verdict(name: str, out: sc.Outcome) -> bool:
    r = out.report
    if name == "small_disk_outbox":
        evicted = out.figures.get("evicted_records", 0)
        assert isinstance(evicted, int)
        return (
            bool(out.figures.get("alive_while_full"))
            and out.figures.get("urgent_events_lost") == 0
            and (r.doubled, r.reordered, r.unexpected, r.altered) == (0, 0, 0, 0)
            and r.lost <= evicted
        )
    if name == "two_agents_one_vehicle" and not out.figures.get("two_epochs"):
        return False
    if name in HEALTH_FOLLOWS_CLOCK:
        return dataclasses.replace(r, health_reordered=0).clean
    return r.clean


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", help="names (default: all)")
    parser.add_argument("--size", choices=("bench", "suite"), default="bench")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--json", type=Path, help="append outcomes as JSON lines")
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's directory")
    args = parser.parse_args()
    if args.list:
        print("\n".join(SCENARIOS))
        return 0
    unknown = [n for n in args.scenarios if n not in SCENARIOS]
    if unknown:
        print(f"bench.faults: unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    size = _size(args.size, args.set)
    print(f"size: {size}", flush=True)
    ok = True
    for name in args.scenarios or list(SCENARIOS):
        workdir = Path(tempfile.mkdtemp(prefix=f"fault-{name}-"))
        t0 = time.monotonic()
        try:
            out = SCENARIOS[name](workdir, size)
        except (AssertionError, RuntimeError, OSError) as exc:
            first = str(exc).strip().splitlines()[:3]
            print(f"{name} [{size.name}]: FAILED after {time.monotonic() - t0:.1f} s: "
                  + " | ".join(first), flush=True)  # fmt: skip
            ok = False
            continue
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        good = _verdict(name, out)
        ok = ok and good
        print(("ok    " if good else "BAD   ") + out.line(), flush=True)
        if not good and out.report.examples:
            print("      " + "; ".join(out.report.examples[:5]), flush=True)
        if args.json is not None:
            with args.json.open("a", encoding="utf-8") as f:
                f.write(out.json() + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
