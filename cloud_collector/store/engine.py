"""The ingest ledger's SQL, backend-neutral, over a minimal connection API (``Tx``).

The query side's SQL is in ``reads``. SQL is written once with ``?`` placeholders (the
PostgreSQL adapter numbers them) and only uses what SQLite >= 3.35 and PostgreSQL >= 12
share (``ON CONFLICT``, ``RETURNING``). Write order inside ``ingest`` is fixed (receipt,
vehicle state, cell rows sorted by key, their per-day sums sorted by key, sign clusters,
vehicle status, epoch ack) so concurrent PostgreSQL transactions of different vehicles
cannot deadlock on the shared aggregate rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final, Protocol

from cloud_collector.errors import IngestError
from cloud_collector.store import aggregate as agg
from cloud_collector.store import health, roads, rollup
from cloud_collector.store import quarantine as quarantine_store
from cloud_collector.store.base import (
    DEFAULT_QUARANTINE_LIMITS,
    IngestResult,
    QuarantineLimits,
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
    # The entries of a JSON object column as a FROM item (``key``, ``value``; lateral):
    # json_each in SQLite, jsonb_each in PostgreSQL.
    json_entries: str
    # The entry ``j.value`` as a number, NULL when it is not a JSON number.
    entry_number: str
    # ``events`` as a FROM item read through its (time, position) index: SQLite's planner
    # otherwise takes ``events_time`` and fetches every row of the period (10-30x slower
    # for a vector tile); PostgreSQL chooses by itself.
    events_by_time_pos: str
    # ``events`` read through its (res-8 cell, time) index (a vector tile's events by
    # place, then time; reads.TILE_CELL_RES): INDEXED BY in SQLite, as above.
    events_by_cell_time: str
    # The aggregate building a JSON object from (key, value) rows.
    json_object_agg: str

    async def execute(self, sql: str, *args: object) -> None: ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None: ...

    async def fetch(self, sql: str, *args: object) -> list[Row]: ...

    async def fetch_columns(self, sql: str, width: int, *args: object) -> list[Sequence[Any]]:
        """The result of ``sql`` (``width`` columns, row order kept) column by column:
        ``width`` sequences of equal length. For results of 10^5 rows: no per-row
        objects on the way."""
        ...

    async def lock_signs(self) -> None: ...

    def merge_json(self, old: str, new: str) -> str:
        """SQL of the JSON object of counts ``old`` plus the non-empty ``new``, key by
        key (``merge_counts`` is ``merge_json("road_cells.counts", "excluded.counts")``)."""
        ...

    async def lock_day_sums(self, exclusive: bool) -> None:
        """Hold the per-day sums' k (``rollup``) until the end of the transaction: shared
        by ingest, exclusive by a rebuild of the k-anonymous sums."""
        ...


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
    contributions_ms: int | None = None,
) -> IngestResult:
    """``contributions_ms``: how long the vehicles of a cell-hour are kept
    (``[retention] cell_vehicles_days``; None: for ever)."""
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
        floor = None if contributions_ms is None else received_ms - contributions_ms
        await _aggregate(tx, batch, floor)
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
        await roads.store_edges(tx, batch.gnss)
    await _store_evidence(tx, batch)
    health = [(vehicle, s.time_ms, json.dumps(s.values, sort_keys=True)) for s in batch.health]
    if health:
        await tx.executemany(
            'INSERT INTO health (vehicle, time_ms, "values") VALUES (?, ?, ?)', health
        )


async def _store_evidence(tx: Tx, batch: Batch) -> None:
    """Frames linked to an event (schema 2); frames linked to none are not kept."""
    vehicle = batch.header.vehicle_id
    evidence = [
        (vehicle, f.bus, f.event_ms, f.time_us, f.can_id, f.extended, f.data)
        for f in batch.frames
        if f.event_ms is not None
    ]
    if evidence:
        await tx.executemany(
            "INSERT INTO evidence_frames (vehicle, bus, event_ms, time_us, can_id, extended,"
            " data) VALUES (?, ?, ?, ?, ?, ?, ?)",
            evidence,
        )


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


STATE_COLUMNS = (
    "cell, hour_ms, last_fix_ms, wiper_bits, failsafe, lane_left, lane_right, pass_flags"
)


async def _aggregate(tx: Tx, batch: Batch, floor_ms: int | None = None) -> None:
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
    new_vehicle = await _new_contributions(tx, vehicle, deltas, floor_ms)
    await upsert_deltas(tx, deltas, new_vehicle)
    await rollup.add(tx, deltas, new_vehicle)
    observations = agg.sign_observations(batch.events)
    if observations:
        await tx.lock_signs()
        for obs in observations:
            await _cluster_sign(tx, obs, vehicle)


async def _new_contributions(
    tx: Tx, vehicle: str, deltas: agg.Deltas, floor_ms: int | None = None
) -> set[tuple[int, int]]:
    """The cell-hours of ``deltas`` that ``vehicle`` contributes to for the first time,
    recorded in ``road_cell_vehicles`` (the distinct-vehicle count of the city's
    k-anonymity threshold). One indexed range read and one insert of the new keys per
    batch; a vehicle's batches are ingested one at a time (its ``vehicle_state`` row is
    held), so the read cannot race with another insert of the same keys.

    Cell-hours before ``floor_ms`` are left out: retention may have removed their
    contributions, so the vehicle may be counted already and is not counted again (a late
    batch can make the count fall short, never exceed the truth)."""
    keys = [k for k in deltas.cells if floor_ms is None or k[1] >= floor_ms]
    if not keys:
        return set()
    hours = [hour for _, hour in keys]
    rows = await tx.fetch(
        "SELECT cell, hour_ms FROM road_cell_vehicles"
        " WHERE vehicle = ? AND hour_ms >= ? AND hour_ms <= ?",
        vehicle, min(hours), max(hours),
    )  # fmt: skip
    seen = {(int(r[0]), int(r[1])) for r in rows}
    new = {key for key in keys if key not in seen}
    if new:
        await tx.executemany(
            "INSERT INTO road_cell_vehicles (vehicle, hour_ms, cell) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            [(vehicle, hour, cell) for cell, hour in sorted(new)],
        )
    return new


async def upsert_deltas(
    tx: Tx, deltas: agg.Deltas, new_vehicle: set[tuple[int, int]] | None = None
) -> None:
    """Add the increments to the cell-hour rows, in key order (see the module docstring).
    ``new_vehicle``: the cell-hours whose distinct-vehicle count grows by one.

    The event counts of a cell-hour live in its row (``counts`` per type, ``events_n`` the
    situations among them, ``aggregate.is_situation``), so a road query reads one row per
    cell-hour and no join. Rows written before situations were told apart hold the sum of
    their counts in ``events_n``."""
    per_cell = deltas.counts()
    rows = []
    for key, d in sorted(deltas.cells.items()):
        lat, lon = agg.centre(key[0])
        counts = per_cell.get(key)
        situations = deltas.situations.get(key, 0)
        rows.append(
            (
                key[0], key[1], lat, lon, d.passes, d.wipers, d.failsafe, d.lanes, d.speed_sum,
                d.speed_n, json.dumps(counts, sort_keys=True) if counts else "{}", situations,
                int(new_vehicle is not None and key in new_vehicle),
            )
        )  # fmt: skip
    if rows:
        await tx.executemany(
            "INSERT INTO road_cells (cell, hour_ms, lat, lon, passes, wipers, failsafe, lanes,"
            " speed_sum, speed_n, counts, events_n, vehicles)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (cell, hour_ms) DO UPDATE SET"
            " passes = road_cells.passes + excluded.passes,"
            " wipers = road_cells.wipers + excluded.wipers,"
            " failsafe = road_cells.failsafe + excluded.failsafe,"
            " lanes = road_cells.lanes + excluded.lanes,"
            " speed_sum = road_cells.speed_sum + excluded.speed_sum,"
            " speed_n = road_cells.speed_n + excluded.speed_n,"
            " counts = CASE WHEN excluded.counts = '{}' THEN road_cells.counts"
            f" ELSE {tx.merge_counts} END,"
            " events_n = road_cells.events_n + excluded.events_n,"
            " vehicles = road_cells.vehicles + excluded.vehicles",
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


async def quarantine(  # noqa: PLR0913 - one keyword per column of the quarantine row
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
