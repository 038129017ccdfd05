"""The road-condition store interface: the ``Store`` protocol and its result types.

Conventions shared by every backend:

* Times are integers, ms since the Unix epoch (UTC). Hours are hour-start times in ms.
* ``epoch`` (an unsigned 64-bit id) is stored as decimal text; ``seq`` as a signed 64-bit
  integer (a seq above 2**63 - 1 cannot occur with a counter that starts at 1, and is
  rejected with ``IngestError`` so that it is quarantined).
* ``events`` returns the OLDEST event first and pages forward with an opaque cursor (keyset
  on ``(time, id)``): a client paging through "since T" never misses rows that arrive while
  it pages, because new rows sort after the cursor or are late arrivals with older times
  that a new query from ``since_ms`` finds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from protocol.batch import Batch
from protocol.envelope import BatchIdentity
from protocol.notices import NOTICE_EPOCH, NOTICE_FIRST_SEQ, NOTICE_LAST_SEQ
from protocol.records import Scalar

if TYPE_CHECKING:
    from cloud_collector.store.access import Access


def utc_day(time_ms: int) -> str:
    """``YYYY-MM-DD`` of ``time_ms`` in UTC: the key of every per-day counter."""
    return time.strftime("%Y-%m-%d", time.gmtime(time_ms // 1000))


# The fleets a reader may see: None is every fleet (an operator's token names its own).
Fleets = tuple[str, ...] | None

# (min_lon, min_lat, max_lon, max_lat), like GeoJSON.
BBox = tuple[float, float, float, float]

DEFAULT_EVENT_LIMIT = 100
MAX_EVENT_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class IngestResult:
    """``new``: the batch was stored now (False: a duplicate). ``contiguous_seq``: what to
    acknowledge for the batch's (vehicle, epoch); see ``aggregate.advance_contiguous``."""

    new: bool
    contiguous_seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EventQuery:
    vehicle: str | None = None
    type: str | None = None
    since_ms: int | None = None  # inclusive
    until_ms: int | None = None  # exclusive
    bbox: BBox | None = None
    limit: int = DEFAULT_EVENT_LIMIT
    cursor: str | None = None  # from EventPage.next_cursor
    fleets: Fleets = None  # only events of these fleets (None: every fleet)
    # Only located events whose res-10 cell-hour has at least this many distinct
    # vehicles (the city's k-anonymity threshold; 0: every event). A page may then hold
    # fewer than ``limit`` events while ``next_cursor`` still pages on.
    min_vehicles: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    id: int
    time_ms: int
    vehicle: str
    fleet: str
    type: str
    attrs: dict[str, Scalar]
    lat: float | None
    lon: float | None
    h3_12: int | None
    speed_kmh: float | None
    source_bus: str | None
    source_id: int | None
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class EvidenceFrame:
    """A raw CAN frame kept as evidence of an event (vehicle clock)."""

    time_us: int
    bus: str
    can_id: int
    extended: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class EventEvidence:
    """An event and the raw frames stored for it, oldest first (empty: none arrived, or
    none were kept)."""

    event: StoredEvent
    frames: list[EvidenceFrame]


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events oldest first; ``next_cursor`` is None on the last page."""

    events: list[StoredEvent]
    next_cursor: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RoadQuery:
    """Cells whose centre lies in ``bbox`` and hours that START in [since_ms, until_ms).

    Only cell-hours with ``exposure >= min_exposure`` are returned (at least 1 when a
    hotspot rate is wanted: a rate over zero passes means nothing). ``type`` restricts the
    event counts and the hotspot rate to one event type. Cells are H3 resolution 10.
    Rows come in (hour_ms, cell) order: at most ``limit`` of them (None: all), after the
    row ``cursor`` names (``reads.cell_cursor`` of the last row of the previous page).
    """

    bbox: BBox | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    type: str | None = None
    min_exposure: int = 1
    limit: int | None = None
    cursor: str | None = None
    # Only cell-hours with at least this many distinct vehicles (k-anonymity; 0: all).
    min_vehicles: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CellHour:
    cell: int  # H3 res-10 index as an integer (h3.int_to_str for the hex form)
    hour_ms: int
    lat: float  # cell centre
    lon: float
    counts: dict[str, int]  # events per type
    exposure: int  # vehicle passes
    # traffic situations per 100 passes (docs/events.md), or with a query type, events of
    # that type per 100 passes; None when exposure is 0
    hotspot_rate: float | None
    mean_speed_kmh: float | None
    wipers_share: float | None  # share of passes with wipers on
    failsafe_share: float | None  # share of passes with a camera failsafe
    lane_quality_share: float | None  # share of passes with lane quality >= 2


@dataclass(frozen=True, slots=True, kw_only=True)
class TileQuery:
    """Rows for one vector tile: stored rows whose position lies in ``bbox``, aggregated
    to H3 resolution ``res`` (cells and road edges), of the hours (events: the times) in
    [since_ms, until_ms). ``type`` restricts the events (and a cell's event count)."""

    bbox: BBox
    res: int
    since_ms: int
    until_ms: int
    type: str | None = None
    limit: int = 4096  # events only: the latest so many
    # Only k-anonymous cell-hours (at least this many distinct vehicles; 0: all) count, and
    # events are placed on their cell's centre (the city's view, ``privacy``); road edges
    # of the roll-up: only those of at least this many passes.
    min_vehicles: int = 0


@dataclass(frozen=True, slots=True)
class CellTotals:
    """A cell's sums over the hours of a period (its stored cells' rows added up)."""

    cell: int
    passes: int
    events: int
    wipers: int
    failsafe: int
    lanes: int
    speed_sum: float
    speed_n: int


@dataclass(frozen=True, slots=True)
class EventPoint:
    time_ms: int
    type: str
    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class RoadEdge:
    """Two neighbouring cells a vehicle drove between directly (a < b), and how often."""

    a: int
    b: int
    passes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SignCluster:
    id: int
    sign_type: int
    lat: float
    lon: float
    limit_kmh: int | None
    observations: int
    vehicles: int
    first_seen_ms: int
    last_seen_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VehicleStatus:
    vehicle: str
    fleet: str
    online: bool | None  # None: no presence message seen yet
    presence_ms: int | None
    last_seen_ms: int | None  # receive time of the last batch (new or duplicate)
    last_epoch: int | None
    last_seq: int | None
    lag_ms: int | None  # receive time minus the batch's last record time
    day: str | None  # UTC day the *_today counters refer to, YYYY-MM-DD
    batches_today: int
    bytes_today: int
    batches_total: int
    bytes_total: int
    records_total: int
    duplicates: int
    quarantined: int
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthPoint:
    """One stored agent health snapshot (agent clock). Of a downsampled history: the
    last snapshot of its time bucket, with the bucket's snapshot ``count`` and the
    lowest and highest value of each numeric key over the bucket."""

    time_ms: int
    values: dict[str, Scalar]
    count: int | None = None
    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)


DEFAULT_HEALTH_LIMIT = 1_000
DEFAULT_HEALTH_POINTS = 600
MAX_HEALTH_POINTS = 2_000


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthQuery:
    """Snapshots with ``since_ms <= time < until_ms``, returned oldest first.

    Without ``points``: the ``limit`` LATEST of them (a chart of "the last N points").
    With ``points``: the window (from ``since_ms``, else its first snapshot, to
    ``until_ms``, else past its last one) cut into at most ``points`` equal time
    buckets, one ``HealthPoint`` per bucket that holds a snapshot.
    """

    vehicle: str
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int = DEFAULT_HEALTH_LIMIT
    points: int | None = None


@dataclass(frozen=True, slots=True)
class EpochSpan:
    """When the collector received the first and the last new batch of one epoch
    (collector clock), and the earliest and latest record time those batches carried
    (the vehicle's clock; None when no new batch was decoded since the store recorded
    them)."""

    epoch: int
    first_rx_ms: int
    last_rx_ms: int
    first_record_ms: int | None = None
    last_record_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VehicleHealth:
    """What the collector knows about one vehicle's health, read in one transaction.

    ``rx_*``: payload bytes received on the batch channels (new, duplicate and
    quarantined-with-identity batches: what the taxi's data plan paid for), per UTC day
    (``YYYY-MM-DD``) and UTC month (``YYYY-MM``). ``seq_gaps``: missing seqs below the
    highest received seq, per epoch (decimal text), epochs without gaps left out.
    ``camera_failsafe``: the camera failsafe state from the vehicle's data (signal and
    events), independent of the health snapshots.
    """

    status: VehicleStatus
    latest_health: HealthPoint | None
    camera_failsafe: bool
    seq_gaps: dict[str, int]
    rx_day: str | None
    rx_bytes_today: int
    rx_month: str | None
    rx_bytes_month: int
    # The last message whose times ran ahead of the collector's clock (beyond the skew):
    # by how much, and the collector's time then. None: never seen.
    clock_ahead_ms: int | None = None
    clock_ahead_at_ms: int | None = None
    # The epochs with the latest new batches, latest first (at most ``RECENT_EPOCHS``).
    epochs: tuple[EpochSpan, ...] = ()


RECENT_EPOCHS = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineLimits:
    """What quarantine keeps (``config.QuarantineConfig``): a prefix of each payload (plus
    its full size and SHA-256), and per sender and UTC day at most so many payloads and
    bytes; beyond that only counts."""

    keep_bytes: int = 4_096
    keep_identified_bytes: int = 1_048_576
    max_per_sender_day: int = 1_000
    max_bytes_per_sender_day: int = 64 * 1024 * 1024


DEFAULT_QUARANTINE_LIMITS = QuarantineLimits()

# What ``Store.quarantine`` did with a payload.
QUARANTINE_STORED = "stored"
QUARANTINE_OVER_CAP = "over_cap"  # the sender's daily quota is used up: counted only
QUARANTINE_REPEAT = "repeat"  # a retained payload already in quarantine: not stored again


# -- feature collections (OGC API - Features, export) ----------------------------------

# The collections the store serves as features; their ids are the OGC collection ids.
EVENTS_COLLECTION = "events"
ROAD_COLLECTION = "road-conditions"
SIGNS_COLLECTION = "signs"
COLLECTION_IDS = (EVENTS_COLLECTION, ROAD_COLLECTION, SIGNS_COLLECTION)
# Event properties and attributes that identify a vehicle or its uplink (an eviction
# notice's epoch and seqs among them): left out of the city's view of an event, in the
# OGC API and the export. ``geojson`` renames an attribute that collides with a fixed
# property to attr_<name>.
HIDDEN_EVENT_KEYS = frozenset(
    {"vehicle", "epoch", "seq", "attr_vehicle", "attr_epoch", "attr_seq",
     NOTICE_EPOCH, NOTICE_FIRST_SEQ, NOTICE_LAST_SEQ}
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureQuery:
    """One keyset page of a collection: features whose position lies in ``bbox`` and
    whose time interval meets [since_ms, until_ms) (an event: its time; a cell-hour: its
    hour; a sign cluster: first to last seen), after the key ``after``, in key order.

    Keys: an event ``(time_ms, id)``, a cell-hour ``(hour_ms, cell)``, a sign cluster
    ``(0, id)``. Cell-hours are all of them, with or without passes."""

    bbox: BBox | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int = DEFAULT_EVENT_LIMIT
    after: tuple[int, int] | None = None
    # Cell-hours: only those with at least this many distinct vehicles (k-anonymity; 0: all).
    min_vehicles: int = 0


@dataclass(frozen=True, slots=True)
class CellPage:
    cells: list[CellHour]
    next_after: tuple[int, int] | None  # None on the last page


@dataclass(frozen=True, slots=True)
class SignPage:
    signs: list[SignCluster]
    next_after: tuple[int, int] | None


@dataclass(frozen=True, slots=True)
class Extent:
    """A collection's spatial and temporal extent (None: the collection is empty)."""

    bbox: BBox | None
    first_ms: int | None
    last_ms: int | None


class FeatureQueries(Protocol):
    """The query side's feature pages (``store.features``)."""

    async def cell_page(self, q: FeatureQuery) -> CellPage: ...

    async def sign_page(self, q: FeatureQuery) -> SignPage: ...

    async def count_features(self, collection: str, q: FeatureQuery, cap: int) -> int | None:
        """How many features of ``collection`` match ``q`` (its key ignored); None when
        more than ``cap`` do (counting on would cost as much as reading them)."""
        ...

    async def extents(self) -> dict[str, Extent]:
        """Each collection's extent, by collection id."""
        ...


class Ledger(Protocol):
    """The transactional ingest ledger: the batch write itself with its receipt, the
    end-to-end acks and eviction receipts, quarantine and presence. What ingest calls; a
    change of the query side never touches it. Every method is one transaction; safe to
    call concurrently from several tasks (the backends serialise what must be serialised)."""

    async def ingest(
        self, batch: Batch, *, topic_channel: str, payload_bytes: int, received_ms: int
    ) -> IngestResult: ...

    async def quarantine(
        self,
        *,
        topic: str,
        payload: bytes,
        reason: str,
        received_ms: int,
        fleet: str | None,
        vehicle: str | None,
        limits: QuarantineLimits = DEFAULT_QUARANTINE_LIMITS,
        retained: bool = False,
    ) -> str:
        """Keep what ``limits`` allow of a rejected payload; one of ``QUARANTINE_*``.

        ``retained``: a retained message, stored only when its topic and hash are not in
        quarantine yet (the broker delivers retained messages again at every subscribe)."""
        ...

    async def quarantine_batch(
        self,
        *,
        identity: BatchIdentity,
        topic: str,
        payload: bytes,
        reason: str,
        received_ms: int,
        limits: QuarantineLimits = DEFAULT_QUARANTINE_LIMITS,
    ) -> IngestResult:
        """Quarantine a payload whose stable identity was readable AND write its receipt
        (one transaction), so it counts as stored for the end-to-end ack (PROTOCOL.md
        3.2 and 6). A redelivered one is a duplicate: stored once."""
        ...

    async def set_presence(
        self, *, fleet: str, vehicle: str, online: bool, time_ms: int
    ) -> None: ...

    async def note_clock_ahead(
        self, *, fleet: str, vehicle: str, ahead_ms: int, received_ms: int
    ) -> None:
        """Record that a message of ``vehicle`` carried a time ``ahead_ms`` past the
        collector's receive time ``received_ms``."""
        ...

    async def ping(self) -> None: ...


class Queries(FeatureQueries, Protocol):
    """The query side: what the API reads (events, road conditions, signs, vehicles,
    health series and what alerts are evaluated on, store figures). Read-only; each
    method is one transaction."""

    async def health_history(self, q: HealthQuery) -> list[HealthPoint]: ...

    async def vehicle_health(
        self, vehicle_id: str | None = None, fleets: Fleets = None
    ) -> list[VehicleHealth]:
        """Every vehicle's (or one vehicle's; empty when unknown) health state, of
        ``fleets`` only when given."""
        ...

    async def events(self, q: EventQuery) -> EventPage: ...

    async def event_evidence(self, event_id: int, fleets: Fleets = None) -> EventEvidence | None:
        """Event ``event_id`` and its evidence frames; None when there is no such event
        (in ``fleets``, when given)."""
        ...

    async def road_conditions(self, q: RoadQuery) -> list[CellHour]: ...

    async def tile_cells(self, q: TileQuery) -> list[CellTotals]: ...

    async def tile_events(self, q: TileQuery) -> list[EventPoint]: ...

    async def tile_roads(self, q: TileQuery) -> list[RoadEdge]: ...

    async def extent(self) -> BBox | None:
        """The bbox of the roads the fleet drove; None when there are none yet."""
        ...

    async def signs(self, bbox: BBox | None) -> list[SignCluster]: ...

    async def vehicles(self) -> list[VehicleStatus]: ...

    async def vehicle(self, vehicle_id: str, fleets: Fleets = None) -> VehicleStatus | None: ...

    async def metrics(self) -> dict[str, int | float]: ...

    async def ping(self) -> None: ...


class Store(Ledger, Queries, Protocol):
    """The road-condition store: both sides on one backend, its access side (API
    tokens, audit log, generated secrets), and its close."""

    access: Access

    async def close(self) -> None: ...
