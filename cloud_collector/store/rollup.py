"""The per-day sums of the road cells (``road_cells_day``), kept at ingest: what a vector
tile of whole UTC days reads instead of the day's cell-hours (``reads.tile_cells``).

Why: a city-zoom ``road_conditions`` tile of one day summed ~50,000 stored cell-hours (at
10 million events: PostgreSQL p95 193 ms, SQLite 4 s, mostly a row lookup per
cell-hour); the day's sums are one row per cell and day, about a tenth as many
(BENCHMARKS.md, "Vector tiles and the paged road-conditions query";
docs/road-conditions.md, "Per-day sums for the map").

Each (day, cell) row holds two sets of sums:

* every hour's (``passes`` .. ``events_n``): the sums of the day's cell-hour rows;
* the k-anonymous hours' only (``k_*``; ``k_hours`` of them), for the city's view
  (``TileQuery.min_vehicles``). A total over every hour would let the city subtract the
  hours it sees and learn one it may not see (fewer than k vehicles), so its day sums
  hold only hours with at least k vehicles. A batch adds at most one vehicle to a
  cell-hour, so at ingest: an hour whose vehicles reach k with this batch adds its whole
  row (as the batch left it); an hour at k or more already adds the batch's increments;
  an hour below k adds nothing.

The k of the ``k_*`` sums is recorded in ``road_cells_day_k`` (NULL: not built, as after
migration 0011). The collector rebuilds the table at start when its ``[auth] k_anonymity``
differs (``ensure_k``, through ``open_store(k_anonymity=...)``); a city tile reads them
only when the recorded k is its own, and otherwise sums the cell-hours. Ingest holds the
recorded k shared for its transaction (``Tx.lock_day_sums``), a rebuild exclusively, so no
batch adds increments under another k than the sums hold.

Rows are upserted in (day_ms, cell) order, after the cell-hour rows (``engine``'s lock
order). ``speed_sum`` adds the same numbers as the cell-hours in another order: equal to
their sum up to rounding in the last bits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple

from cloud_collector.store import aggregate as agg

if TYPE_CHECKING:
    from cloud_collector.store.engine import Tx

DAY_MS: Final = agg.DAY_MS
SUM_COLUMNS: Final = (
    "passes", "wipers", "failsafe", "lanes", "speed_sum", "speed_n", "counts", "events_n",
)  # fmt: skip
K_COLUMNS: Final = ("k_hours", *(f"k_{c}" for c in SUM_COLUMNS))
DAY_COLUMNS: Final = ("day_ms", "cell", "lat", "lon", *SUM_COLUMNS, *K_COLUMNS)
_JSON_COLUMNS: Final = frozenset({"counts", "k_counts"})
# The scalar sums, as the cell-hour rows name them.
_SCALARS: Final = tuple(c for c in SUM_COLUMNS if c != "counts")


def day_sql(column: str) -> str:
    """SQL of the UTC day start of the ms time in ``column``, floored like
    ``aggregate.day_of`` (SQL's ``%`` truncates towards zero)."""
    return f"({column} - (({column} % {DAY_MS}) + {DAY_MS}) % {DAY_MS})"


def whole_days(since_ms: int, until_ms: int) -> tuple[int, int] | None:
    """The whole UTC days within [since_ms, until_ms) as [first day, end), or None."""
    first = since_ms + (-since_ms) % DAY_MS
    end = until_ms - until_ms % DAY_MS
    return (first, end) if first < end else None


@dataclass(slots=True)
class Sums:
    """One set of a (day, cell) row's sums, as a batch adds them."""

    passes: int = 0
    wipers: int = 0
    failsafe: int = 0
    lanes: int = 0
    speed_sum: float = 0.0
    speed_n: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    events_n: int = 0
    hours: int = 0

    def add(self, d: agg.CellDelta, counts: dict[str, int], events_n: int) -> None:
        self.passes += d.passes
        self.wipers += d.wipers
        self.failsafe += d.failsafe
        self.lanes += d.lanes
        self.speed_sum += d.speed_sum
        self.speed_n += d.speed_n
        for kind, n in counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + n
        self.events_n += events_n

    def values(self) -> tuple[object, ...]:
        """In ``SUM_COLUMNS`` order."""
        counts = json.dumps(self.counts, sort_keys=True) if self.counts else "{}"
        return (self.passes, self.wipers, self.failsafe, self.lanes, self.speed_sum,
                self.speed_n, counts, self.events_n)  # fmt: skip


class _Hour(NamedTuple):
    """A k-anonymous cell-hour row as the batch left it."""

    vehicles: int
    sums: agg.CellDelta
    counts: str
    events_n: int


async def recorded_k(tx: Tx) -> int | None:
    """The k the ``k_*`` sums hold; None: they are not built."""
    rows = await tx.fetch("SELECT k FROM road_cells_day_k")
    return None if not rows or rows[0][0] is None else int(rows[0][0])


async def add(tx: Tx, deltas: agg.Deltas, new_vehicle: set[tuple[int, int]]) -> None:
    """Add a batch's increments to the day sums; after ``engine.upsert_deltas`` wrote them
    to the cell-hours. ``new_vehicle``: the cell-hours that gained a vehicle."""
    if not deltas.cells:
        return
    await tx.lock_day_sums(exclusive=False)
    k = await recorded_k(tx)
    anonymous = {} if k is None else await _anonymous_hours(tx, deltas, k)
    counts = deltas.counts()
    days: dict[tuple[int, int], tuple[Sums, Sums]] = {}
    for key, d in deltas.cells.items():
        every, k_only = days.setdefault((agg.day_of(key[1]), key[0]), (Sums(), Sums()))
        hour_counts, situations = counts.get(key, {}), deltas.situations.get(key, 0)
        every.add(d, hour_counts, situations)
        hour = anonymous.get(key)
        if hour is None:
            continue
        if key in new_vehicle and hour.vehicles == k:  # k reached now: the whole hour
            k_only.add(hour.sums, json.loads(hour.counts), hour.events_n)
            k_only.hours += 1
        else:
            k_only.add(d, hour_counts, situations)
    rows = []
    for (day, cell), (every, k_only) in sorted(days.items()):
        lat, lon = agg.centre(cell)
        rows.append((day, cell, lat, lon, *every.values(), k_only.hours, *k_only.values()))
    await tx.executemany(_upsert_sql(tx), rows)


async def _anonymous_hours(tx: Tx, deltas: agg.Deltas, k: int) -> dict[tuple[int, int], _Hour]:
    """The batch's cell-hours that have at least ``k`` vehicles now, with their rows (one
    range read of the primary key)."""
    cells = sorted({cell for cell, _ in deltas.cells})
    hours = [hour for _, hour in deltas.cells]
    rows = await tx.fetch(
        f"SELECT cell, hour_ms, vehicles, {', '.join(_SCALARS)}, counts FROM road_cells"
        f" WHERE cell IN ({', '.join('?' * len(cells))}) AND hour_ms >= ? AND hour_ms <= ?"
        " AND vehicles >= ?",
        *cells, min(hours), max(hours), k,
    )  # fmt: skip
    found = {}
    for r in rows:
        key = (int(r[0]), int(r[1]))
        if key in deltas.cells:
            sums = agg.CellDelta(int(r[3]), int(r[4]), int(r[5]), int(r[6]), float(r[7]), int(r[8]))
            found[key] = _Hour(int(r[2]), sums, r[10], int(r[9]))
    return found


def _upsert_sql(tx: Tx) -> str:
    sets = []
    for c in (*SUM_COLUMNS, *K_COLUMNS):
        old, new = f"road_cells_day.{c}", f"excluded.{c}"
        if c in _JSON_COLUMNS:
            merged = tx.merge_json(old, new)
            sets.append(f"{c} = CASE WHEN {new} = '{{}}' THEN {old} ELSE {merged} END")
        else:
            sets.append(f"{c} = {old} + {new}")
    return (
        f"INSERT INTO road_cells_day ({', '.join(DAY_COLUMNS)})"
        f" VALUES ({', '.join('?' * len(DAY_COLUMNS))})"
        f" ON CONFLICT (day_ms, cell) DO UPDATE SET {', '.join(sets)}"
    )


# -- rebuilds --------------------------------------------------------------------------


async def ensure_k(tx: Tx, k: int) -> bool:
    """Rebuild the day sums for ``k`` unless the k-anonymous ones hold it; whether it
    did."""
    await tx.lock_day_sums(exclusive=True)
    if await recorded_k(tx) == k:
        return False
    await rebuild(tx, k)
    return True


def _counts_sql(tx: Tx, where: str) -> str:
    """``(day_ms, cell, counts)``: the cell-hours' counts merged per day and cell."""
    return (
        f"SELECT day_ms, cell, {tx.json_object_agg}(key, n) AS counts FROM ("
        f"SELECT {day_sql('r.hour_ms')} AS day_ms, r.cell AS cell, j.key AS key,"
        f" CAST(SUM({tx.entry_number}) AS BIGINT) AS n"
        f" FROM road_cells r, {tx.json_entries}(r.counts) j{where} GROUP BY 1, 2, 3"
        ") t GROUP BY day_ms, cell"
    )


def _sums_sql(where: str) -> str:
    """``(day_ms, cell, lat, lon, hours, <the scalar sums>)`` of the cell-hours."""
    sums = ", ".join(f"SUM({c}) AS {c}" for c in _SCALARS)
    return (
        f"SELECT {day_sql('hour_ms')} AS day_ms, cell, MIN(lat) AS lat, MIN(lon) AS lon,"
        f" COUNT(*) AS hours, {sums} FROM road_cells{where} GROUP BY 1, 2"
    )


async def rebuild(tx: Tx, k: int | None) -> None:
    """The whole table anew from the cell-hours, the k-anonymous sums for ``k`` (None:
    not built): at a change of k, and for a loader that wrote ``road_cells`` directly.

    One INSERT in (day, cell) order, as ingest creates the rows day after day, and no
    UPDATE of them: on PostgreSQL a day's rows then share pages (a city tile of a day at 1
    million events: ~500 pages, 11 ms, instead of ~8,000 pages and 60 ms when updates had
    moved the rows). Every hour's sums come out as they were (the same cell-hours)."""
    await tx.execute("DELETE FROM road_cells_day")
    on = " ON {t}.day_ms = s.day_ms AND {t}.cell = s.cell"
    columns = ["day_ms", "cell", "lat", "lon", *_SCALARS, "counts"]
    values = ["s.day_ms", "s.cell", "s.lat", "s.lon", *(f"s.{c}" for c in _SCALARS)]
    values.append("COALESCE(c.counts, '{}')")
    joins = f"({_sums_sql('')}) s LEFT JOIN ({_counts_sql(tx, '')}) c{on.format(t='c')}"
    args: list[object] = []
    if k is not None:
        columns += ["k_hours", *(f"k_{c}" for c in _SCALARS), "k_counts"]
        values += [f"COALESCE(ks.{c}, 0)" for c in ("hours", *_SCALARS)]
        values.append("COALESCE(kc.counts, '{}')")
        joins += f" LEFT JOIN ({_sums_sql(' WHERE vehicles >= ?')}) ks{on.format(t='ks')}"
        joins += f" LEFT JOIN ({_counts_sql(tx, ' WHERE r.vehicles >= ?')}) kc{on.format(t='kc')}"
        args += [k, k]
    await tx.execute(
        f"INSERT INTO road_cells_day ({', '.join(columns)}) SELECT {', '.join(values)}"
        f" FROM {joins} ORDER BY s.day_ms, s.cell",
        *args,
    )
    await tx.execute("UPDATE road_cells_day_k SET k = ?", k)
