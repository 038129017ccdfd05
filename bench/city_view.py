"""Benchmark: the CPU cost of the city's view of an event (``privacy.city_event_feature``:
the day's pseudonym, the cell centre, the time to the minute and the enciphered id) and of
the id alone (``privacy.CityIds.event_id``), per event, in this process.

Run::

    .venv/bin/python -m bench.city_view [--events 10000] [--runs 5]

Pure computation, no I/O; the figures are process CPU time (``time.process_time``), which
other load on the machine disturbs less than wall time, with the load average beside
them. Each loop is bounded by ``--events`` x ``--runs``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import h3

from cloud_collector.privacy import CityIds, city_event_feature
from cloud_collector.store.base import StoredEvent

T0 = 1_796_221_303_089
KEY = b"k" * 32


def _events(n: int) -> list[StoredEvent]:
    cell = int(h3.str_to_int(h3.latlng_to_cell(37.5665, 126.978, 12)))
    return [
        StoredEvent(
            id=i,
            time_ms=T0 + i * 7,
            vehicle=f"taxi-{i % 500}",
            fleet="seoul",
            type="fcw",
            attrs={"sound_code": 4},
            lat=37.5665,
            lon=126.978,
            h3_12=cell,
            speed_kmh=36.0,
            source_bus="cam",
            source_id=0x700,
            epoch=1,
            seq=i,
        )
        for i in range(n)
    ]


def _us_per_event(events: list[StoredEvent], runs: int, one: object) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.process_time()
        if one == "feature":
            for e in events:
                city_event_feature(e, KEY)
        else:
            ids = CityIds(KEY)
            for e in events:
                ids.event_id(e.id, e.time_ms)
        out.append((time.process_time() - start) / len(events) * 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    events = _events(args.events)
    for name in ("feature", "id"):
        figures = _us_per_event(events, args.runs, name)
        label = "city_event_feature" if name == "feature" else "CityIds.event_id"
        print(
            f"{label}: median {statistics.median(figures):.1f} us CPU/event,"
            f" min {min(figures):.1f} ({args.runs} runs of {args.events:,} events)"
        )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
