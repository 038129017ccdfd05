"""CPU per outbox transaction: the agent's commits without the rest of the agent.

    .venv/bin/python -m bench.outbox_commit [--outboxes 100] [--seconds 120]

Opens N outboxes in a temporary directory, all on one event loop as a fleet-sim worker
has them, and plays S seconds of records as fast as they go (no sleeping): every second
each outbox appends one second of records (speed at 10 Hz, one GNSS fix, as the agent's
flush), and every 10 s it closes its batches, reads the due ones, marks them published
and takes the end-to-end ack (what the closer and the uplink do for a bulk batch). Prints
one JSON line: the process's CPU time (user + system) in all, on the event loop's thread
and on the others (the SQLite threads), per outbox-second and per write transaction, and
the wall time. Bounded: S seconds of N outboxes, nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from edge_agent.outbox import Outbox, Records
from protocol.records import GnssFix, SignalSeries

T0 = 1_700_000_000_000
CLOSE_EVERY_S = 10


def _second(t: int) -> Records:
    times = tuple(t + 100 * i for i in range(10))
    speeds = tuple(40.0 + i / 10 for i in range(10))
    return Records(
        signals=(SignalSeries("speed", times, speeds, "km/h"),),
        gnss=(GnssFix(t, 52.5, 13.4, 3, speed_mps=11.0),),
    )


async def _cycle(box: Outbox, t: int) -> int:
    """The 10-s round of one outbox: close, publish, ack. Returns its write transactions."""
    await box.close_due_batches(t, force=True)
    due = await box.due_for_publish(limit=100, resend_after_ms=0)
    if not due:
        return 1
    await box.mark_published([(b.epoch, b.seq) for b in due])
    await box.acknowledge(due[-1].epoch, max(b.seq for b in due))
    return 3


async def _play(directory: Path, outboxes: int, seconds: int) -> dict[str, float]:
    """Transactions, CPU (all, the loop's thread) and wall time of the play alone: opening
    and closing the outboxes are not counted."""
    boxes = [
        await Outbox.open(directory / f"o{i}.sqlite3", fleet_id="f", vehicle_id=f"t{i:04d}")
        for i in range(outboxes)
    ]
    transactions = 0
    try:
        cpu0, loop0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_THREAD)
        wall0 = time.monotonic()
        for s in range(seconds):
            t = T0 + s * 1000
            await asyncio.gather(*(box.append(_second(t), t) for box in boxes))
            transactions += outboxes
            if s % CLOSE_EVERY_S == CLOSE_EVERY_S - 1:
                transactions += sum(await asyncio.gather(*(_cycle(box, t) for box in boxes)))
        return {
            "transactions": transactions,
            "cpu": _cpu(resource.RUSAGE_SELF) - cpu0,
            "loop": _cpu(resource.RUSAGE_THREAD) - loop0,  # the loop runs on this thread
            "wall": time.monotonic() - wall0,
        }
    finally:
        for box in boxes:
            await box.close()


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--outboxes", type=int, default=100)
    p.add_argument("--seconds", type=int, default=120)
    args = p.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        run = asyncio.run(_play(Path(tmp), args.outboxes, args.seconds))
    transactions, cpu, loop, wall = run["transactions"], run["cpu"], run["loop"], run["wall"]
    outbox_seconds = args.outboxes * args.seconds
    print(
        json.dumps(
            {
                "outboxes": args.outboxes,
                "seconds": args.seconds,
                "write_transactions": int(transactions),
                "cpu_s": round(cpu, 2),
                "loop_thread_cpu_s": round(loop, 2),
                "other_threads_cpu_s": round(cpu - loop, 2),
                "wall_s": round(wall, 1),
                "cpu_ms_per_outbox_second": round(cpu / outbox_seconds * 1000, 3),
                "cpu_us_per_write_transaction": round(cpu / transactions * 1e6, 1),
                "load_before": load_before,
                "load_after": os.getloadavg(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
