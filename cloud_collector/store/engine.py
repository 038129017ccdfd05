"""Backend-neutral store logic: the SQL both backends run, over a minimal connection API.

SQL is written once with ``?`` placeholders (the PostgreSQL adapter numbers them) and only
uses what SQLite >= 3.35 and PostgreSQL >= 12 share (``ON CONFLICT``, ``RETURNING``).
Write order inside ``ingest`` is fixed (receipt, vehicle state, cell rows sorted by key,
sign clusters, vehicle status, epoch ack) so concurrent PostgreSQL transactions of
different vehicles cannot deadlock on the shared aggregate rows.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import gc
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from typing import Any, Final, Protocol

from cloud_collector.errors import IngestError, QueryError
from cloud_collector.store import aggregate as agg
from cloud_collector.store import health
from cloud_collector.store import quarantine as quarantine_store
from cloud_collector.store.base import (
    DEFAULT_QUARANTINE_LIMITS,
    MAX_EVENT_LIMIT,
    BBox,
    CellHour,
    EventPage,
    EventQuery,
    IngestResult,
    QuarantineLimits,
    RoadQuery,
    SignCluster,
    StoredEvent,
    VehicleStatus,
    utc_day,
)
from protocol.batch import Batch
from protocol.envelope import BatchIdentity
from protocol.notices import noticed_seqs

Row = Sequence[Any]
MAX_SEQ = 2**63 - 1
# receipts.channel of seqs an eviction notice named: the agent lost them, nothing was stored.
EVICTED_CHANNEL: Final = "evicted"
# Receipts beyond the acknowledged seq read per round when advancing the ack.
ACK_SCAN = 1_000


class Tx(Protocol):
    """One open transaction of a backend."""

    # " FOR UPDATE" where row locks exist (PostgreSQL), "" where writers are serialised.
    lock_suffix: str
    # Two-argument minimum/maximum: MIN/MAX in SQLite, LEAST/GREATEST in PostgreSQL.
    least: str
    greatest: str
    # ``road_cells.counts`` (a JSON object of per-type event counts) plus
    # ``excluded.counts``, key by key: the SET expression of the cell-hour upsert.
    merge_counts: str
    # The count of the event type bound to the one ``?`` in it, from ``counts``; NULL
    # when the cell-hour has no event of that type.
    count_of: str

    async def execute(self, sql: str, *args: object) -> None: ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None: ...

    async def fetch(self, sql: str, *args: object) -> list[Row]: ...

    async def fetch_columns(self, sql: str, width: int, *args: object) -> list[Sequence[Any]]:
        """The result of ``sql`` (``width`` columns, row order kept) column by column:
        ``width`` sequences of equal length. For results of 10^5 rows: no per-row
        objects on the way."""
        ...

    async def lock_signs(self) -> None: ...


async def fetchrow(tx: Tx, sql: str, *args: object) -> Row | None:
    rows = await tx.fetch(sql, *args)
    return rows[0] if rows else None


# -- ingest ----------------------------------------------------------------------------


async def ingest(
    tx: Tx,
    batch: Batch,
    *,
    channel: str,
    payload_bytes: int,
    received_ms: int,
    grace_ms: int | None,
) -> IngestResult:
    h = batch.header
    if h.seq > MAX_SEQ:
        raise IngestError(f"seq {h.seq} does not fit a signed 64-bit integer")
    epoch = str(h.epoch)
    # A receipt only an eviction notice wrote gives way to the batch itself.
    inserted = await tx.fetch(
        "INSERT INTO receipts (vehicle, epoch, seq, fleet, channel, received_ms, payload_bytes,"
        " records) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (vehicle, epoch, seq) DO UPDATE"
        " SET channel = excluded.channel, received_ms = excluded.received_ms,"
        " payload_bytes = excluded.payload_bytes, records = excluded.records"
        " WHERE receipts.channel = ? RETURNING seq",
        h.vehicle_id, epoch, h.seq, h.fleet_id, channel, received_ms, payload_bytes,
        h.counts.total, EVICTED_CHANNEL,
    )  # fmt: skip
    new = bool(inserted)
    if new:
        await _store_records(tx, batch)
        await _aggregate(tx, batch)
        await health.note_latest_health(tx, h.vehicle_id, batch.health, received_ms)
        await _note_evictions(tx, batch, received_ms, grace_ms)
    await _update_status(tx, batch, new, payload_bytes, received_ms)
    await health.count_rx(tx, h.vehicle_id, payload_bytes, received_ms)
    acked = await _advance_ack(tx, h.vehicle_id, epoch, received_ms, grace_ms)
    if new:
        await health.count_receipt(
            tx, tx.greatest, h.vehicle_id, epoch, h.seq, received_ms=received_ms,
            records=(h.first_ms, h.last_ms),
        )  # fmt: skip
    return IngestResult(new, acked)


async def _note_evictions(tx: Tx, batch: Batch, received_ms: int, grace_ms: int | None) -> None:
    """Give the seqs the batch's eviction notices name receipts of channel
    ``EVICTED_CHANNEL`` (no records), so the epoch's acks pass them; a later batch of that
    epoch, or the agent's re-publication of one, carries the ack. They still count as
    missing in ``seq_gaps``: their records are lost. Should one of those batches arrive
    after all (published before it was evicted), it replaces its receipt (see ``ingest``)."""
    h = batch.header
    for event in batch.events:
        noticed = noticed_seqs(event)
        if noticed is None or noticed[2] > MAX_SEQ:
            continue
        epoch, first, last = str(noticed[0]), noticed[1], noticed[2]
        await tx.execute(
            "INSERT INTO epoch_acks (vehicle, epoch, acked_seq) VALUES (?, ?, 0)"
            " ON CONFLICT DO NOTHING",
            h.vehicle_id, epoch,
        )  # fmt: skip
        await tx.executemany(
            "INSERT INTO receipts (vehicle, epoch, seq, fleet, channel, received_ms,"
            " payload_bytes, records) VALUES (?, ?, ?, ?, ?, ?, 0, 0) ON CONFLICT DO NOTHING",
            [
                (h.vehicle_id, epoch, seq, h.fleet_id, EVICTED_CHANNEL, received_ms)
                for seq in range(first, last + 1)
            ],
        )
        if epoch != str(h.epoch):
            await _advance_ack(tx, h.vehicle_id, epoch, received_ms, grace_ms)


async def _store_records(tx: Tx, batch: Batch) -> None:
    h = batch.header
    vehicle, epoch = h.vehicle_id, str(h.epoch)
    events = []
    for e in batch.events:
        fix = e.fix
        events.append(
            (
                e.time_ms, vehicle, h.fleet_id, e.type, json.dumps(e.attrs, sort_keys=True),
                None if fix is None else float(fix.lat), None if fix is None else float(fix.lon),
                None if fix is None else agg.cell_at(fix.lat, fix.lon),
                None if e.speed_kmh is None else float(e.speed_kmh),
                None if e.source is None else e.source.bus,
                None if e.source is None else e.source.can_id, epoch, h.seq,
            )
        )  # fmt: skip
    if events:
        await tx.executemany(
            "INSERT INTO events (time_ms, vehicle, fleet, type, attrs, lat, lon, h3_12, speed_kmh,"
            " source_bus, source_id, epoch, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            events,
        )
    samples = [
        (vehicle, s.name, t, None if v is None else float(v), s.unit)
        for s in batch.signals
        for t, v in zip(s.times_ms, s.values, strict=True)
    ]
    if samples:
        await tx.executemany(
            "INSERT INTO samples (vehicle, name, time_ms, value, unit) VALUES (?, ?, ?, ?, ?)",
            samples,
        )
    fixes = [
        (
            vehicle, f.time_ms, float(f.lat), float(f.lon), f.mode, _opt_float(f.alt_m),
            _opt_float(f.speed_mps), _opt_float(f.track_deg), f.clock_offset_ms,
            agg.cell_at(f.lat, f.lon),
        )
        for f in batch.gnss
    ]  # fmt: skip
    if fixes:
        await tx.executemany(
            "INSERT INTO gnss (vehicle, time_ms, lat, lon, mode, alt_m, speed_mps, track_deg,"
            " clock_offset_ms, h3_12) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            fixes,
        )
    health = [(vehicle, s.time_ms, json.dumps(s.values, sort_keys=True)) for s in batch.health]
    if health:
        await tx.executemany(
            'INSERT INTO health (vehicle, time_ms, "values") VALUES (?, ?, ?)', health
        )


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


STATE_COLUMNS = (
    "cell, hour_ms, last_fix_ms, wiper_bits, failsafe, lane_left, lane_right, pass_flags"
)


async def _aggregate(tx: Tx, batch: Batch) -> None:
    vehicle = batch.header.vehicle_id
    await tx.execute(
        f"INSERT INTO vehicle_state (vehicle, {STATE_COLUMNS}) VALUES"
        " (?, NULL, NULL, NULL, 0, 0, NULL, NULL, 0) ON CONFLICT DO NOTHING",
        vehicle,
    )
    row = await fetchrow(
        tx, f"SELECT {STATE_COLUMNS} FROM vehicle_state WHERE vehicle = ?{tx.lock_suffix}", vehicle
    )
    assert row is not None
    state = agg.VehicleState(
        row[0], row[1], row[2], int(row[3]), bool(row[4]), row[5], row[6], int(row[7])
    )
    state, deltas = agg.apply_batch(state, batch)
    await tx.execute(
        "UPDATE vehicle_state SET cell = ?, hour_ms = ?, last_fix_ms = ?, wiper_bits = ?,"
        " failsafe = ?, lane_left = ?, lane_right = ?, pass_flags = ? WHERE vehicle = ?",
        state.cell, state.hour_ms, state.last_fix_ms, state.wiper_bits, int(state.failsafe),
        state.lane_left, state.lane_right, state.pass_flags, vehicle,
    )  # fmt: skip
    await upsert_deltas(tx, deltas)
    observations = agg.sign_observations(batch.events)
    if observations:
        await tx.lock_signs()
        for obs in observations:
            await _cluster_sign(tx, obs, vehicle)


async def upsert_deltas(tx: Tx, deltas: agg.Deltas) -> None:
    """Add the increments to the cell-hour rows, in key order (see the module docstring).

    The event counts of a cell-hour live in its row (``counts``, ``events_n``), so a road
    query reads one row per cell-hour and no join."""
    per_cell: dict[tuple[int, int], dict[str, int]] = {}
    for (cell, hour, kind), n in deltas.events.items():
        per_cell.setdefault((cell, hour), {})[kind] = n
    rows = []
    for key, d in sorted(deltas.cells.items()):
        lat, lon = agg.centre(key[0])
        counts = per_cell.get(key)
        rows.append(
            (
                key[0], key[1], lat, lon, d.passes, d.wipers, d.failsafe, d.lanes, d.speed_sum,
                d.speed_n, json.dumps(counts, sort_keys=True) if counts else "{}",
                sum(counts.values()) if counts else 0,
            )
        )  # fmt: skip
    if rows:
        await tx.executemany(
            "INSERT INTO road_cells (cell, hour_ms, lat, lon, passes, wipers, failsafe, lanes,"
            " speed_sum, speed_n, counts, events_n) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (cell, hour_ms) DO UPDATE SET"
            " passes = road_cells.passes + excluded.passes,"
            " wipers = road_cells.wipers + excluded.wipers,"
            " failsafe = road_cells.failsafe + excluded.failsafe,"
            " lanes = road_cells.lanes + excluded.lanes,"
            " speed_sum = road_cells.speed_sum + excluded.speed_sum,"
            " speed_n = road_cells.speed_n + excluded.speed_n,"
            " counts = CASE WHEN excluded.events_n = 0 THEN road_cells.counts"
            f" ELSE {tx.merge_counts} END,"
            " events_n = road_cells.events_n + excluded.events_n",
            rows,
        )


async def _cluster_sign(tx: Tx, obs: agg.SignObservation, vehicle: str) -> None:
    min_lon, min_lat, max_lon, max_lat = agg.degree_box(obs.lat, obs.lon, agg.SIGN_RADIUS_M)
    candidates = await tx.fetch(
        "SELECT id, lat, lon FROM sign_clusters WHERE sign_type = ? AND lat BETWEEN ? AND ?"
        " AND lon BETWEEN ? AND ?",
        obs.sign_type, min_lat, max_lat, min_lon, max_lon,
    )  # fmt: skip
    found = agg.nearest_cluster([(int(r[0]), r[1], r[2]) for r in candidates], obs.lat, obs.lon)
    if found is None:
        created = await tx.fetch(
            "INSERT INTO sign_clusters (sign_type, lat, lon, limit_kmh, observations, vehicles,"
            " first_seen_ms, last_seen_ms) VALUES (?, ?, ?, ?, 1, 1, ?, ?) RETURNING id",
            obs.sign_type, obs.lat, obs.lon, obs.limit_kmh, obs.time_ms, obs.time_ms,
        )  # fmt: skip
        await tx.execute(
            "INSERT INTO sign_vehicles (cluster_id, vehicle) VALUES (?, ?)",
            created[0][0], vehicle,
        )  # fmt: skip
        return
    added = await tx.fetch(
        "INSERT INTO sign_vehicles (cluster_id, vehicle) VALUES (?, ?)"
        " ON CONFLICT DO NOTHING RETURNING cluster_id",
        found, vehicle,
    )  # fmt: skip
    row = await fetchrow(tx, "SELECT lat, lon, observations FROM sign_clusters WHERE id = ?", found)
    assert row is not None
    n = int(row[2])
    await tx.execute(
        "UPDATE sign_clusters SET lat = ?, lon = ?, observations = observations + 1,"
        " vehicles = vehicles + ?, limit_kmh = COALESCE(?, limit_kmh),"
        f" first_seen_ms = {tx.least}(first_seen_ms, ?),"
        f" last_seen_ms = {tx.greatest}(last_seen_ms, ?) WHERE id = ?",
        agg.running_mean(row[0], n, obs.lat), agg.running_mean(row[1], n, obs.lon),
        1 if added else 0, obs.limit_kmh, obs.time_ms, obs.time_ms, found,
    )  # fmt: skip


async def _update_status(
    tx: Tx, batch: Batch, new: bool, payload_bytes: int, received_ms: int
) -> None:
    h = batch.header
    day = utc_day(received_ms)
    n_new = 1 if new else 0
    await tx.execute(
        "INSERT INTO vehicle_status (vehicle, fleet) VALUES (?, ?) ON CONFLICT DO NOTHING",
        h.vehicle_id, h.fleet_id,
    )  # fmt: skip
    if not new:
        await tx.execute(
            "UPDATE vehicle_status SET duplicates = duplicates + 1,"
            f" last_seen_ms = {tx.greatest}(COALESCE(last_seen_ms, 0), ?) WHERE vehicle = ?",
            received_ms, h.vehicle_id,
        )  # fmt: skip
        return
    # A new UTC day restarts the *_today counters.
    await tx.execute(
        "UPDATE vehicle_status SET fleet = ?, last_seen_ms = ?, last_epoch = ?, last_seq = ?,"
        " lag_ms = ?,"
        " batches_today = CASE WHEN day = ? THEN batches_today ELSE 0 END + ?,"
        " bytes_today = CASE WHEN day = ? THEN bytes_today ELSE 0 END + ?, day = ?,"
        " batches_total = batches_total + ?, bytes_total = bytes_total + ?,"
        " records_total = records_total + ? WHERE vehicle = ?",
        h.fleet_id, received_ms, str(h.epoch), h.seq, received_ms - h.last_ms,
        day, n_new, day, payload_bytes, day, n_new, payload_bytes, h.counts.total,
        h.vehicle_id,
    )  # fmt: skip


async def _advance_ack(
    tx: Tx, vehicle: str, epoch: str, received_ms: int, grace_ms: int | None
) -> int:
    await tx.execute(
        "INSERT INTO epoch_acks (vehicle, epoch, acked_seq) VALUES (?, ?, 0)"
        " ON CONFLICT DO NOTHING",
        vehicle, epoch,
    )  # fmt: skip
    row = await fetchrow(
        tx,
        f"SELECT acked_seq FROM epoch_acks WHERE vehicle = ? AND epoch = ?{tx.lock_suffix}",
        vehicle, epoch,
    )  # fmt: skip
    assert row is not None
    acked = start = int(row[0])
    while True:
        receipts = await tx.fetch(
            "SELECT seq, received_ms FROM receipts WHERE vehicle = ? AND epoch = ? AND seq > ?"
            " ORDER BY seq LIMIT ?",
            vehicle, epoch, acked, ACK_SCAN,
        )  # fmt: skip
        advanced = agg.advance_contiguous(
            acked, [(int(r[0]), int(r[1])) for r in receipts], received_ms, grace_ms
        )
        if len(receipts) < ACK_SCAN or advanced == acked:
            acked = advanced
            break
        acked = advanced
    if acked != start:
        await tx.execute(
            "UPDATE epoch_acks SET acked_seq = ? WHERE vehicle = ? AND epoch = ?",
            acked, vehicle, epoch,
        )  # fmt: skip
    return acked


# -- other writes ----------------------------------------------------------------------


async def quarantine(
    tx: Tx,
    *,
    topic: str,
    payload: bytes,
    reason: str,
    received_ms: int,
    fleet: str | None,
    vehicle: str | None,
    limits: QuarantineLimits = DEFAULT_QUARANTINE_LIMITS,
    retained: bool = False,
    identified: bool = False,
) -> str:
    return await quarantine_store.quarantine(
        tx, topic=topic, payload=payload, reason=reason, received_ms=received_ms,
        fleet=fleet, vehicle=vehicle, limits=limits, retained=retained, identified=identified,
    )  # fmt: skip


async def quarantine_batch(
    tx: Tx,
    *,
    identity: BatchIdentity,
    topic: str,
    payload: bytes,
    reason: str,
    received_ms: int,
    grace_ms: int | None,
    limits: QuarantineLimits = DEFAULT_QUARANTINE_LIMITS,
) -> IngestResult:
    """Quarantine a payload under its readable identity and write its receipt, so that it
    counts as stored for the ack (PROTOCOL.md 3.2 and 6). A redelivery is a duplicate.

    A seq outside [1, 2^63 - 1] (0 is reserved; larger ones do not fit the receipts) is
    quarantined without a receipt: the current ack of the epoch is returned unchanged."""
    vehicle, fleet, epoch, seq = (
        identity.vehicle_id, identity.fleet_id, str(identity.epoch), identity.seq
    )  # fmt: skip
    receipt = 1 <= seq <= MAX_SEQ
    new = True
    if receipt:
        inserted = await tx.fetch(
            "INSERT INTO receipts (vehicle, epoch, seq, fleet, channel, received_ms,"
            " payload_bytes, records) VALUES (?, ?, ?, ?, ?, ?, ?, 0)"
            " ON CONFLICT DO NOTHING RETURNING seq",
            vehicle, epoch, seq, fleet, topic.rsplit("/", 1)[-1][:16], received_ms,
            len(payload),
        )  # fmt: skip
        new = bool(inserted)
    if new:
        await quarantine(
            tx, topic=topic, payload=payload, reason=reason, received_ms=received_ms,
            fleet=fleet, vehicle=vehicle, limits=limits, identified=True,
        )  # fmt: skip
    else:
        await tx.execute(
            "UPDATE vehicle_status SET duplicates = duplicates + 1 WHERE vehicle = ?", vehicle
        )
    await health.count_rx(tx, vehicle, len(payload), received_ms)
    if not receipt:
        row = await fetchrow(
            tx, "SELECT acked_seq FROM epoch_acks WHERE vehicle = ? AND epoch = ?", vehicle, epoch
        )
        return IngestResult(new, 0 if row is None else int(row[0]))
    acked = await _advance_ack(tx, vehicle, epoch, received_ms, grace_ms)
    if new:
        await health.count_receipt(tx, tx.greatest, vehicle, epoch, seq, received_ms=received_ms)
    return IngestResult(new, acked)


async def set_presence(tx: Tx, fleet: str, vehicle: str, online: bool, time_ms: int) -> None:
    """Retained status messages can be re-delivered late: an older one never wins."""
    await tx.execute(
        "INSERT INTO vehicle_status (vehicle, fleet, online, presence_ms) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (vehicle) DO UPDATE SET online = excluded.online,"
        " presence_ms = excluded.presence_ms"
        " WHERE vehicle_status.presence_ms IS NULL"
        " OR vehicle_status.presence_ms <= excluded.presence_ms",
        vehicle, fleet, online, time_ms,
    )  # fmt: skip


# -- queries ---------------------------------------------------------------------------


def encode_cursor(time_ms: int, event_id: int) -> str:
    return base64.urlsafe_b64encode(f"{time_ms}.{event_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        time_text, id_text = base64.urlsafe_b64decode(padded).decode().split(".")
        return int(time_text), int(id_text)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise QueryError(f"invalid cursor {cursor!r}") from exc


def _bbox_sql(bbox: BBox | None, where: list[str], args: list[object]) -> None:
    if bbox is None:
        return
    min_lon, min_lat, max_lon, max_lat = bbox
    if min_lon > max_lon or min_lat > max_lat:
        raise QueryError(f"bbox {bbox} is not (min_lon, min_lat, max_lon, max_lat)")
    where.append("lat BETWEEN ? AND ? AND lon BETWEEN ? AND ?")
    args += [min_lat, max_lat, min_lon, max_lon]


EVENT_COLUMNS = (
    "id, time_ms, vehicle, fleet, type, attrs, lat, lon, h3_12, speed_kmh, source_bus,"
    " source_id, epoch, seq"
)


async def events(tx: Tx, q: EventQuery) -> EventPage:
    if not 1 <= q.limit <= MAX_EVENT_LIMIT:
        raise QueryError(f"limit must be in [1, {MAX_EVENT_LIMIT}], not {q.limit}")
    where: list[str] = []
    args: list[object] = []
    for column, value in (("vehicle", q.vehicle), ("type", q.type)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if q.since_ms is not None:
        where.append("time_ms >= ?")
        args.append(q.since_ms)
    if q.until_ms is not None:
        where.append("time_ms < ?")
        args.append(q.until_ms)
    _bbox_sql(q.bbox, where, args)
    if q.cursor is not None:
        after_time, after_id = decode_cursor(q.cursor)
        where.append("(time_ms > ? OR (time_ms = ? AND id > ?))")
        args += [after_time, after_time, after_id]
    sql = f"SELECT {EVENT_COLUMNS} FROM events"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY time_ms, id LIMIT ?"
    rows = await tx.fetch(sql, *args, q.limit + 1)
    page = [_event(r) for r in rows[: q.limit]]
    more = len(rows) > q.limit
    return EventPage(page, encode_cursor(page[-1].time_ms, page[-1].id) if more else None)


def _event(r: Row) -> StoredEvent:
    return StoredEvent(
        id=int(r[0]), time_ms=int(r[1]), vehicle=r[2], fleet=r[3], type=r[4],
        attrs=json.loads(r[5]), lat=r[6], lon=r[7], h3_12=r[8], speed_kmh=r[9],
        source_bus=r[10], source_id=r[11], epoch=int(r[12]), seq=int(r[13]),
    )  # fmt: skip


# The fields of CellHour in the column order of the road query.
_CELL_HOUR_FIELDS: Final = (
    "cell", "hour_ms", "lat", "lon", "counts", "exposure", "hotspot_rate", "mean_speed_kmh",
    "wipers_share", "failsafe_share", "lane_quality_share",
)  # fmt: skip
if tuple(f.name for f in dataclasses.fields(CellHour)) != _CELL_HOUR_FIELDS or hasattr(
    CellHour, "__post_init__"
):
    raise ImportError("CellHour changed: update engine.road_conditions and _cell_hours")


async def road_conditions(tx: Tx, q: RoadQuery) -> list[CellHour]:
    """One range scan of ``road_cells`` in (hour_ms, cell) order; the shares, rates and
    means are computed by the database (IEEE double division, as Python would)."""
    where = ["passes >= ?"]
    args: list[object] = [max(q.min_exposure, 0)]
    if q.since_ms is not None:
        where.append("hour_ms >= ?")
        args.append(q.since_ms)
    if q.until_ms is not None:
        where.append("hour_ms < ?")
        args.append(q.until_ms)
    _bbox_sql(q.bbox, where, args)
    if q.type is None:
        counts, events_n, head = "counts", "events_n", []
    else:
        counts, events_n, head = tx.count_of, f"COALESCE({tx.count_of}, 0)", [q.type, q.type]
    columns = await tx.fetch_columns(
        f"SELECT cell, hour_ms, lat, lon, {counts}, passes,"
        f" CAST(100 AS DOUBLE PRECISION) * {events_n} / NULLIF(passes, 0),"
        " speed_sum / NULLIF(speed_n, 0),"
        " CAST(wipers AS DOUBLE PRECISION) / NULLIF(passes, 0),"
        " CAST(failsafe AS DOUBLE PRECISION) / NULLIF(passes, 0),"
        " CAST(lanes AS DOUBLE PRECISION) / NULLIF(passes, 0)"
        f" FROM road_cells WHERE {' AND '.join(where)} ORDER BY hour_ms, cell",
        len(_CELL_HOUR_FIELDS), *head, *args,
    )  # fmt: skip
    return _cell_hours(columns, q.type)


def _parsed_counts(texts: Sequence[str]) -> Iterator[dict[str, int]]:
    """The JSON objects ``texts`` as fresh dicts. Few distinct texts recur across many
    cell-hours, so each is parsed once and copied per row."""
    parsed = {text: json.loads(text) for text in set(texts)}
    return map(dict, map(parsed.__getitem__, texts))


def _cell_hours(columns: Sequence[Sequence[Any]], kind: str | None) -> list[CellHour]:
    """``CellHour(cell=c[0][i], hour_ms=c[1][i], ...)`` for each row i of the road query.

    Built column by column with C-level loops (``map`` over the slot descriptors) instead
    of one constructor call per row: a city-wide query returns 10^5 rows, and the
    per-row interpreter overhead would dominate its latency. The result is the same as
    the constructor's (the fields are checked against the dataclass at import, and
    CellHour has no ``__post_init__``). The cyclic garbage collector is paused meanwhile:
    the new objects hold no cycles, and its allocation-triggered passes over the
    growing young generation would otherwise cost as much as the building."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        cells: list[CellHour] = list(map(object.__new__, repeat(CellHour, len(columns[0]))))
        for name, column in zip(_CELL_HOUR_FIELDS, columns, strict=True):
            values: Iterable[Any] = column
            if name == "counts":
                if kind is None:
                    values = _parsed_counts(column)
                else:
                    values = [{} if n is None else {kind: int(n)} for n in column]
            deque(map(getattr(CellHour, name).__set__, cells, values), maxlen=0)
    finally:
        if collecting:
            gc.enable()
    return cells


async def signs(tx: Tx, bbox: BBox | None) -> list[SignCluster]:
    where: list[str] = []
    args: list[object] = []
    _bbox_sql(bbox, where, args)
    sql = (
        "SELECT id, sign_type, lat, lon, limit_kmh, observations, vehicles, first_seen_ms,"
        " last_seen_ms FROM sign_clusters"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = await tx.fetch(sql + " ORDER BY id", *args)
    return [
        SignCluster(
            id=int(r[0]), sign_type=int(r[1]), lat=float(r[2]), lon=float(r[3]),
            limit_kmh=None if r[4] is None else int(r[4]), observations=int(r[5]),
            vehicles=int(r[6]), first_seen_ms=int(r[7]), last_seen_ms=int(r[8]),
        )
        for r in rows
    ]  # fmt: skip


STATUS_COLUMNS = (
    "vehicle, fleet, online, presence_ms, last_seen_ms, last_epoch, last_seq, lag_ms, day,"
    " batches_today, bytes_today, batches_total, bytes_total, records_total, duplicates,"
    " quarantined"
)


def _status(r: Row) -> VehicleStatus:
    return VehicleStatus(
        vehicle=r[0], fleet=r[1], online=None if r[2] is None else bool(r[2]),
        presence_ms=r[3], last_seen_ms=r[4], last_epoch=None if r[5] is None else int(r[5]),
        last_seq=r[6], lag_ms=r[7], day=r[8], batches_today=int(r[9]), bytes_today=int(r[10]),
        batches_total=int(r[11]), bytes_total=int(r[12]), records_total=int(r[13]),
        duplicates=int(r[14]), quarantined=int(r[15]),
    )  # fmt: skip


# Public name for the health reads (store.health) of the same columns.
status_of = _status


async def vehicles(tx: Tx) -> list[VehicleStatus]:
    rows = await tx.fetch(f"SELECT {STATUS_COLUMNS} FROM vehicle_status ORDER BY vehicle")
    return [_status(r) for r in rows]


async def vehicle(tx: Tx, vehicle_id: str) -> VehicleStatus | None:
    row = await fetchrow(
        tx, f"SELECT {STATUS_COLUMNS} FROM vehicle_status WHERE vehicle = ?", vehicle_id
    )
    return None if row is None else _status(row)


async def metrics(tx: Tx) -> dict[str, int | float]:
    """Totals from the per-vehicle rows (no hot global counter row to contend on) and
    quarantine counts by reason (``quarantine_total:<reason>``)."""
    row = await fetchrow(
        tx,
        "SELECT COUNT(*), COALESCE(SUM(batches_total), 0), COALESCE(SUM(bytes_total), 0),"
        " COALESCE(SUM(records_total), 0), COALESCE(SUM(duplicates), 0),"
        " COALESCE(SUM(CASE WHEN online THEN 1 ELSE 0 END), 0) FROM vehicle_status",
    )
    assert row is not None
    out: dict[str, int | float] = {
        "vehicles": int(row[0]),
        "batches_total": int(row[1]),
        "bytes_total": int(row[2]),
        "records_total": int(row[3]),
        "duplicates_total": int(row[4]),
        "vehicles_online": int(row[5]),
    }
    quarantined = 0
    for reason, n in await tx.fetch("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason"):
        out[f"quarantine_total:{reason}"] = int(n)
        quarantined += int(n)
    out["quarantine_total"] = quarantined
    return out
