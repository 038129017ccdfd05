"""Retention and time partitions as policy: what to create, drop and delete at ``now``.

Pure: no I/O. The store's adapters (``store.maintenance``) list what exists, ask this
module, and carry the answer out.

Which tables expire, by which time column, and (on PostgreSQL) the width of their
partitions. The widths follow the row rates: a taxi sends about 8,500 samples an hour of
driving (BENCHMARKS.md, 1,425 in 10 minutes), so 500 taxis on 12-hour shifts write ~50
million samples and a similar count of GNSS fixes a day: one partition per day keeps each
partition a size an index build and a drop handle quickly, and retention within a day of
its setting. Events (tens per taxi-hour at most), their evidence frames and health
snapshots (one a minute) are orders of magnitude fewer: a partition per week, about 53
for a year of events. Road aggregates (``road_cells``, their per-day sums
``road_cells_day``, the sign inventory) are the product and are kept; they are not
listed. The per-vehicle contributions to a cell-hour (``road_cell_vehicles``) expire by
the hour they name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

DAY_MS: Final = 86_400_000
WEEK_MS: Final = 7 * DAY_MS
# Periods are aligned to 1970-01-05 00:00 UTC, a Monday: a week period is an ISO week.
# The migration's ``collector_period_start`` uses the same origin.
PERIOD_ORIGIN_MS: Final = 4 * DAY_MS
# No partition is made for times before this (a clock that came up in 1970 writes into
# the default partition instead of creating a partition per day since then).
EARLIEST_PARTITION_MS: Final = 1_577_836_800_000  # 2020-01-01
# Partitions made ahead of now, in periods (plus the current one).
PERIODS_AHEAD: Final = 2


@dataclass(frozen=True, slots=True)
class Expiring:
    """A table whose rows expire by ``column``; ``width_ms`` its partition width on a
    partitioned store, None if it is not partitioned; ``key``: the columns that name a
    row on SQLite (its primary key for a table WITHOUT ROWID)."""

    table: str
    column: str
    width_ms: int | None
    key: tuple[str, ...] = ("rowid",)


# Retention setting name (``[retention] <name>_days``) -> the tables it governs. Evidence
# frames go with their event: a frame outliving its event could never be found again.
EXPIRING: Final[Mapping[str, tuple[Expiring, ...]]] = {
    "samples": (Expiring("samples", "time_ms", DAY_MS),),
    "gnss": (Expiring("gnss", "time_ms", DAY_MS),),
    "events": (
        Expiring("events", "time_ms", WEEK_MS),
        Expiring("evidence_frames", "event_ms", WEEK_MS),
    ),
    "health": (Expiring("health", "time_ms", WEEK_MS),),
    "quarantine": (Expiring("quarantine", "received_ms", None),),
    # Which vehicles reached a cell-hour: a trace of who was where, needed only while late
    # batches for the cell-hour may still arrive (``road_cells.vehicles`` keeps the count).
    "cell_vehicles": (
        Expiring("road_cell_vehicles", "hour_ms", None, ("vehicle", "hour_ms", "cell")),
    ),
}
PARTITIONED: Final = tuple(t for ts in EXPIRING.values() for t in ts if t.width_ms is not None)


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of ``parent``: rows with ``lo <= time < hi``; both None for the
    default partition."""

    parent: str
    name: str
    lo: int | None
    hi: int | None


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete rows of ``relation`` (a table, or one partition) with ``column < cut_ms``."""

    table: str
    relation: str
    column: str
    cut_ms: int


@dataclass(frozen=True, slots=True)
class Plan:
    drop: tuple[Partition, ...]
    delete: tuple[Delete, ...]


def period_start(t_ms: int, width_ms: int) -> int:
    return PERIOD_ORIGIN_MS + (t_ms - PERIOD_ORIGIN_MS) // width_ms * width_ms


def cutoffs(now_ms: int, keep_days: Mapping[str, int]) -> dict[str, int]:
    """Table -> the oldest time kept (rows before it go) for every setting that expires
    (0 days: kept for ever, not listed)."""
    out: dict[str, int] = {}
    for setting, days in keep_days.items():
        if setting not in EXPIRING:
            raise ValueError(f"unknown retention setting {setting!r}")
        if days > 0:
            for t in EXPIRING[setting]:
                out[t.table] = now_ms - days * DAY_MS
    return out


def expiring(name: str) -> Expiring:
    for tables in EXPIRING.values():
        for t in tables:
            if t.table == name:
                return t
    raise ValueError(f"not an expiring table: {name!r}")


def plan(now_ms: int, keep_days: Mapping[str, int], partitions: Sequence[Partition] | None) -> Plan:
    """What retention does at ``now_ms``. ``partitions``: those of the partitioned tables,
    or None for a store without partitions.

    Exactly the rows older than the cut go: a partition that ends at or before it is
    dropped whole; in a partition that straddles it, and in the default partition, the
    rows before it are deleted (in bounded batches by the adapter)."""
    drop: list[Partition] = []
    delete: list[Delete] = []
    for table, cut in cutoffs(now_ms, keep_days).items():
        t = expiring(table)
        if partitions is None or t.width_ms is None:
            delete.append(Delete(table, table, t.column, cut))
            continue
        for p in partitions:
            if p.parent != table:
                continue
            if p.hi is not None and p.hi <= cut:
                drop.append(p)
            elif p.lo is None or p.lo < cut:
                delete.append(Delete(table, p.name, t.column, cut))
    return Plan(tuple(drop), tuple(delete))


def wanted_periods(
    now_ms: int, table: Expiring, cut_ms: int | None, occupied: Iterable[int] = ()
) -> list[int]:
    """Period starts whose partitions ``table`` should have at ``now_ms``: the previous
    period (late data), the current one and ``PERIODS_AHEAD`` more, plus ``occupied``
    (periods the default partition holds rows of), none ending at or before the retention
    cut ``cut_ms`` or before ``EARLIEST_PARTITION_MS``, none past the periods ahead."""
    width = table.width_ms
    if width is None:
        return []
    current = period_start(now_ms, width)
    last = current + PERIODS_AHEAD * width
    floor = max(EARLIEST_PARTITION_MS, cut_ms if cut_ms is not None else EARLIEST_PARTITION_MS)
    starts = {current + k * width for k in range(-1, PERIODS_AHEAD + 1)}
    starts.update(period_start(t, width) for t in occupied)
    return sorted(s for s in starts if s + width > floor and s <= last)
