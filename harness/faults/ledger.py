"""The ledger: what the taxis produced, record by record, and how the store compares.

Every record a vehicle's pipeline produces from its recording gets an identity
``(vehicle, kind, name, time_ms)``: kind ``event`` (name = event type), ``sample`` (name =
signal) or ``gnss`` (name empty). The produced list comes from one uninterrupted
in-process run of the same pipeline over the same frames and track fixes, fed exactly as
``edge-agent replay`` feeds them; it is deterministic, so any difference in the store is
the delivery path's doing.

After a scenario the store is read back (the real collector's SQLite or PostgreSQL store,
or the test consumer's database) and compared:

- lost: produced, not stored;
- doubled: stored more often than produced;
- unexpected: stored, never produced;
- altered: a sample stored with another value than produced;
- reordered: within one vehicle and stream (each event type; each signal; GNSS), records stored
  after a record of the same stream with a later time, in the store's insertion order.
  The uplink publishes each lane in seq order and every loss is made good by re-sending
  the oldest unacknowledged batches first, so a record that arrives behind a later one
  is the delivery path reordering a vehicle's data.

Health snapshots are stamped with the gateway's wall clock, so their identities are not
known in advance: for them only doubles (one vehicle, one time, stored twice) and
reordering are counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import sqlite3
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from edge_agent.assemble import build_pipeline
from edge_agent.config import load_config
from edge_agent.nmea import read_nmea
from edge_agent.sources import ReplaySource
from protocol.notices import EVICTION_NOTICE, NOTICE_RECORDS

EVENT = "event"
SAMPLE = "sample"
GNSS = "gnss"

RecordId = tuple[str, str, str, int]  # (vehicle, kind, name, time_ms)


@dataclass
class Produced:
    """Every record the vehicles produced, in production order, and the sample values."""

    records: list[RecordId] = field(default_factory=list)
    values: dict[RecordId, float | None] = field(default_factory=dict)

    def add(self, other: Produced) -> None:
        self.records += other.records
        self.values.update(other.values)

    @property
    def vehicles(self) -> set[str]:
        return {r[0] for r in self.records}


def produced(config_path: Path, recording: Path, *, vehicle: str | None = None) -> Produced:
    """What one uninterrupted ``edge-agent replay`` of ``recording`` with this config
    produces: events, thinned samples and (with ``[gnss] nmea``) the track's fixes."""
    config = load_config(config_path)
    vid = vehicle or config.vehicle.id
    route = {b.logged_channel: b.name for b in config.bus}
    pipeline = build_pipeline(config, config_path.parent, [b.name for b in config.bus])
    track = None if config.gnss is None else config.gnss.nmea_path(config_path.parent)
    fixes = deque(sorted(read_nmea(track), key=lambda f: f.time_ms)) if track else deque()
    for frame in ReplaySource(recording).frames():
        bus = route.get(str(frame.channel))
        if bus is None:
            continue
        # As the agent does: the track's fixes up to a frame's time go in before it.
        while fixes and fixes[0].time_ms <= frame.timestamp * 1000:
            fix = fixes.popleft()
            pipeline.on_fix(fix, fix.time_ms)
        pipeline.on_frame(bus, frame)
    out = Produced()
    out.records += [(vid, EVENT, e.type, e.time_ms) for e in pipeline.events]
    out.records += [(vid, GNSS, "", f.time_ms) for f in pipeline.fixes]
    for series in pipeline.thinner.drain():
        for t, v in zip(series.times_ms, series.values, strict=True):
            key = (vid, SAMPLE, series.name, t)
            out.records.append(key)
            out.values[key] = None if v is None else float(v)
    return out


@dataclass
class Stored:
    """What a store holds, each stream in its insertion order."""

    records: list[RecordId] = field(default_factory=list)
    values: dict[RecordId, list[float | None]] = field(default_factory=dict)
    # (vehicle, time_ms, the snapshot's values as stored): two agents of one vehicle may
    # stamp two different snapshots with the same millisecond.
    health: list[tuple[str, int, str]] = field(default_factory=list)
    kinds: frozenset[str] = frozenset({EVENT, SAMPLE, GNSS})
    # Records the agents declared lost in eviction notices (not records themselves).
    evicted: int = 0


def _fill(
    out: Stored,
    events: Iterable[Sequence[object]],
    samples: Iterable[Sequence[object]],
    gnss: Iterable[Sequence[object]] = (),
    health: Iterable[Sequence[object]] = (),
) -> Stored:
    for v, t, ms, *attrs in events:
        if t == EVICTION_NOTICE:
            notice = json.loads(str(attrs[0])) if attrs else {}
            out.evicted += int(notice.get(NOTICE_RECORDS, 0))
            continue
        out.records.append((str(v), EVENT, str(t), int(str(ms))))
    for v, name, ms, value in samples:
        key = (str(v), SAMPLE, str(name), int(str(ms)))
        out.records.append(key)
        out.values.setdefault(key, []).append(None if value is None else float(str(value)))
    out.records += [(str(v), GNSS, "", int(str(ms))) for v, ms in gnss]
    out.health += [(str(v), int(str(ms)), str(values)) for v, ms, values in health]
    return out


def read_collector_sqlite(path: Path) -> Stored:
    """The real collector's SQLite store (``[store] url = sqlite:///...``)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return _fill(
            Stored(),
            db.execute("SELECT vehicle, type, time_ms, attrs FROM events ORDER BY id"),
            db.execute("SELECT vehicle, name, time_ms, value FROM samples ORDER BY rowid"),
            db.execute("SELECT vehicle, time_ms FROM gnss ORDER BY rowid"),
            db.execute('SELECT vehicle, time_ms, "values" FROM health ORDER BY rowid'),
        )
    finally:
        db.close()


def read_collector_postgres(url: str) -> Stored:
    """The real collector's PostgreSQL store. The tables are append-only, so the heap
    order (ctid) is the insertion order."""

    async def read() -> Stored:
        conn = await asyncpg.connect(url)
        try:
            rows = [
                [tuple(r) for r in await conn.fetch(query)]
                for query in (
                    "SELECT vehicle, type, time_ms, attrs::text FROM events ORDER BY id",
                    "SELECT vehicle, name, time_ms, value FROM samples ORDER BY ctid",
                    "SELECT vehicle, time_ms FROM gnss ORDER BY ctid",
                    'SELECT vehicle, time_ms, "values"::text FROM health ORDER BY ctid',
                )
            ]
            return _fill(Stored(), *rows)
        finally:
            await conn.close()

    return asyncio.run(read())


def read_consumer(path: Path) -> Stored:
    """The test consumer's database (harness/consumer.py): events and samples only."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = _fill(
            Stored(),
            db.execute("SELECT vehicle, type, time_ms FROM events ORDER BY rowid"),
            db.execute("SELECT vehicle, name, time_ms, value FROM samples ORDER BY rowid"),
        )
        out.kinds = frozenset({EVENT, SAMPLE})
        return out
    finally:
        db.close()


@dataclass(frozen=True)
class Report:
    produced: int
    stored: int
    lost: int
    doubled: int
    reordered: int
    unexpected: int
    altered: int
    health_stored: int
    health_doubled: int
    health_reordered: int
    examples: tuple[str, ...]
    evicted: int = 0  # records the agents declared lost in eviction notices

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.doubled
            or self.reordered
            or self.unexpected
            or self.altered
            or self.health_doubled
            or self.health_reordered
        )

    def line(self) -> str:
        return (
            f"produced {self.produced}, stored {self.stored}, lost {self.lost}, "
            f"doubled {self.doubled}, reordered {self.reordered}, unexpected {self.unexpected}, "
            f"altered {self.altered}; health stored {self.health_stored}, doubled "
            f"{self.health_doubled}, reordered {self.health_reordered}; "
            f"declared evicted {self.evicted}"
        )

    def assert_clean(self, *, health_order: bool = True) -> None:
        """Nothing lost, doubled, reordered, unexpected or altered. ``health_order=False``
        where the scenario steps the gateway's wall clock, which stamps health."""
        report = self if health_order else dataclasses.replace(self, health_reordered=0)
        assert report.clean, self.line() + "".join(f"\n  {e}" for e in self.examples)


def _stream(record: RecordId) -> tuple[str, str, str]:
    """Events are ordered per type: urgent types go out on the event lane within a second,
    the others with the bulk batches, so across types the arrival order differs by design."""
    vehicle, kind, name, _ = record
    return (vehicle, kind, name)


def _inversions(records: Iterable[tuple[object, int]]) -> list[tuple[object, int, int]]:
    """Records (stream, time) stored after a record of the same stream with a later time:
    (stream, time, the later time seen before)."""
    latest: dict[object, int] = {}
    out = []
    for stream, t in records:
        seen = latest.get(stream)
        if seen is not None and t < seen:
            out.append((stream, t, seen))
        else:
            latest[stream] = t
    return out


def compare(want: Produced, got: Stored, window: tuple[int, int] | None = None) -> Report:
    """The ledger's verdict; only the vehicles and kinds both sides know are compared,
    and with ``window`` only records with ``lo <= time_ms <= hi`` (and no health)."""
    vehicles = want.vehicles

    def inside(r: RecordId) -> bool:
        return window is None or window[0] <= r[3] <= window[1]

    expected = Counter(r for r in want.records if r[1] in got.kinds and inside(r))
    stored_list = [r for r in got.records if r[0] in vehicles and inside(r)]
    stored = Counter(stored_list)
    lost = expected - stored
    extra = stored - expected
    doubled = Counter({k: n for k, n in extra.items() if k in expected})
    unexpected = Counter({k: n for k, n in extra.items() if k not in expected})
    altered = []
    for key, values in got.values.items():
        if key not in want.values:
            continue
        w = want.values[key]
        for v in values:
            same = (v is None) == (w is None) and (
                v is None or w is None or math.isclose(v, w, rel_tol=1e-6, abs_tol=1e-6)
            )
            if not same:
                altered.append((key, w, v))
    reordered = _inversions((_stream(r), r[3]) for r in stored_list)
    health = [h for h in got.health if h[0] in vehicles and window is None]
    health_doubled = Counter(health) - Counter(set(health))
    health_reordered = _inversions((v, t) for v, t, _ in health)
    examples = [f"lost {k} x{n}" for k, n in list(lost.items())[:5]]
    examples += [f"doubled {k} x{n}" for k, n in list(doubled.items())[:5]]
    examples += [f"unexpected {k} x{n}" for k, n in list(unexpected.items())[:5]]
    examples += [f"altered {k}: produced {w}, stored {v}" for k, w, v in altered[:5]]
    examples += [f"reordered {s} t={t} after t={seen}" for s, t, seen in reordered[:5]]
    examples += [f"health doubled {k[:2]} x{n + 1}" for k, n in list(health_doubled.items())[:5]]
    return Report(
        produced=sum(expected.values()),
        stored=len(stored_list),
        lost=sum(lost.values()),
        doubled=sum(doubled.values()),
        reordered=len(reordered),
        unexpected=sum(unexpected.values()),
        altered=len(altered),
        health_stored=len(health),
        health_doubled=sum(health_doubled.values()),
        health_reordered=len(health_reordered),
        examples=tuple(examples),
        evicted=got.evicted,
    )


def span(want: Produced) -> tuple[int, int]:
    """The first and last record time of what was produced."""
    times = [r[3] for r in want.records]
    return (min(times), max(times))
