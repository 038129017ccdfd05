"""Batching and eviction policy of the outbox: pure decisions, no I/O and no clock.

Every function takes the current time as ``now_ms`` from the caller, so the policy is
tested with plain numbers and the outbox decides what "now" is in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

from protocol import contracts
from protocol.body import Body
from protocol.notices import MAX_NOTICE_SEQS, eviction_notice
from protocol.records import Event
from protocol.topics import Channel

# Priorities: higher survives longer when the outbox is full. Bulk telemetry is the
# cheapest to lose, health next, safety events are kept until nothing else is left.
PRIORITY_BULK: Final = 0
PRIORITY_HEALTH: Final = 1
PRIORITY_EVENT: Final = 2

# The outbox stages and batches per lane; a lane is the channel its batches go out on.
LANES: Final = (Channel.EVENT, Channel.HEALTH, Channel.BATCH)
PRIORITY: Final[dict[str, int]] = {
    Channel.EVENT: PRIORITY_EVENT,
    Channel.HEALTH: PRIORITY_HEALTH,
    Channel.BATCH: PRIORITY_BULK,
}
# Names of the eviction counters, by priority of the evicted batch (whatever the cause).
EVICTION_CAUSE: Final[dict[int, str]] = {
    PRIORITY_BULK: "evicted_bulk",
    PRIORITY_HEALTH: "evicted_health",
    PRIORITY_EVENT: "evicted_event",
}
# Why batches are evicted: the outbox's byte cap, or too little free space on its disk.
CAUSE_CAP: Final = "cap"
CAUSE_SPACE: Final = "space"
# Free space never evicts urgent events: kept on disk until sent, or, when nothing else
# is left to evict, held in memory by the agent (edge_agent.holding). The byte cap still
# evicts them last.
SPACE_EVICTS_BELOW: Final = PRIORITY_EVENT
# Counter of the batches evicted for free space (they are also in EVICTION_CAUSE's).
EVICTED_FOR_SPACE: Final = "evicted_for_space"
# Free bytes the outbox keeps on its filesystem by default. Room for SQLite's WAL, which
# grows by up to ~4 MB between checkpoints and is kept at up to 8 MiB after one
# (journal_size_limit), for the largest transaction (a backlog's batches closed at once)
# and for the rest of the system (journald, package updates): about 0.4 % of an 8 GB card.
DEFAULT_RESERVE_BYTES: Final = 32 << 20
# Below the reserve, free pages kept inside the outbox's file for the next writes: more
# than one transaction allocates between two checkpoints (about a second of records).
ROOM_IN_FILE_BYTES: Final = 1 << 20

# Urgent event types, from protocol.contracts; named here too for the lane's other readers.
URGENT_EVENT_TYPES: Final = contracts.URGENT_EVENT_TYPES


def backlog_age_ms(oldest_pending_ms: int | None, now_ms: int) -> int:
    """Age of the oldest record in a closed batch not yet acknowledged; 0 when no batch is
    pending. Staged records are not a backlog: they wait for their lane's batch age."""
    return 0 if oldest_pending_ms is None else max(0, now_ms - int(oldest_pending_ms))


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """When staged records are closed into a batch, per lane.

    ``max_bytes`` counts staged (uncompressed msgpack) bytes; the default keeps a batch
    far below the protocol's 1 MiB compressed payload and 16 MiB body limits even for
    incompressible raw frames.
    """

    max_records: int = 20_000
    max_bytes: int = 512 * 1024
    bulk_max_age_ms: int = 10_000
    urgent_max_age_ms: int = 1_000
    health_max_age_ms: int = 30_000
    urgent_types: frozenset[str] = field(default=URGENT_EVENT_TYPES)

    def __post_init__(self) -> None:
        for name in (
            "max_records",
            "max_bytes",
            "bulk_max_age_ms",
            "urgent_max_age_ms",
            "health_max_age_ms",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"BatchPolicy.{name} must be a positive int, not {value!r}")

    def is_urgent(self, event_type: str) -> bool:
        return event_type in self.urgent_types

    def max_age_ms(self, lane: str) -> int:
        if lane == Channel.EVENT:
            return self.urgent_max_age_ms
        if lane == Channel.HEALTH:
            return self.health_max_age_ms
        return self.bulk_max_age_ms


def should_close(
    policy: BatchPolicy,
    lane: str,
    *,
    oldest_staged_ms: int | None,
    count: int,
    nbytes: int,
    now_ms: int,
) -> bool:
    """Whether a lane's staged records form a batch now: when full by count or bytes, or
    when its oldest staged record has waited the lane's maximum age.

    Age counts from when a record was staged, not from its own time stamp: a wrong clock
    in a record must not hold it back or flush everything at once.
    """
    if oldest_staged_ms is None or count <= 0:
        return False
    if count >= policy.max_records or nbytes >= policy.max_bytes:
        return True
    return now_ms - oldest_staged_ms >= policy.max_age_ms(lane)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One staged chunk as the planner sees it: its row id, record count and byte size."""

    ident: int
    count: int
    nbytes: int


def plan_batches(policy: BatchPolicy, chunks: Sequence[Chunk]) -> list[list[int]]:
    """Group chunks (in staging order) into batches of at most ``max_records`` records and
    ``max_bytes`` bytes; a chunk larger than a limit forms a batch of its own."""
    groups: list[list[int]] = []
    current: list[int] = []
    count = nbytes = 0
    for chunk in chunks:
        if current and (
            count + chunk.count > policy.max_records or nbytes + chunk.nbytes > policy.max_bytes
        ):
            groups.append(current)
            current, count, nbytes = [], 0, 0
        current.append(chunk.ident)
        count += chunk.count
        nbytes += chunk.nbytes
    if current:
        groups.append(current)
    return groups


def lane_bodies(policy: BatchPolicy, records: Body) -> dict[str, Body]:
    """The records of each lane: urgent events alone, health alone, everything else bulk."""
    urgent = tuple(e for e in records.events if policy.is_urgent(e.type))
    other = tuple(e for e in records.events if not policy.is_urgent(e.type))
    return {
        Channel.EVENT: Body(events=urgent),
        Channel.HEALTH: Body(health=records.health),
        Channel.BATCH: Body(
            signals=records.signals, events=other, gnss=records.gnss, frames=records.frames
        ),
    }


def groups_to_close(
    policy: BatchPolicy,
    lane: str,
    chunks: Sequence[Chunk],
    *,
    oldest_staged_ms: int,
    now_ms: int,
    force: bool = False,
) -> list[list[int]]:
    """The staged chunks of ``lane`` (in staging order) to close now, grouped into batches:
    all of them when forced or due by age; when closed for size only, a last group that is
    not full keeps collecting until it is due."""
    count = sum(c.count for c in chunks)
    nbytes = sum(c.nbytes for c in chunks)
    due = should_close(
        policy, lane, oldest_staged_ms=oldest_staged_ms, count=count, nbytes=nbytes, now_ms=now_ms
    )
    if not chunks or not (force or due):
        return []
    groups = plan_batches(policy, chunks)
    if force or now_ms - oldest_staged_ms >= policy.max_age_ms(lane):
        return groups
    sizes = {c.ident: c for c in chunks}
    last = groups[-1]
    full = (
        sum(sizes[i].count for i in last) >= policy.max_records
        or sum(sizes[i].nbytes for i in last) >= policy.max_bytes
    )
    return groups if full else groups[:-1]


T = TypeVar("T")
R = TypeVar("R")


def split_on_failure(
    items: Sequence[T], attempt: Callable[[Sequence[T]], R | None]
) -> list[tuple[Sequence[T], R | None]]:
    """Try ``items`` as one group; a group whose ``attempt`` fails (None) is halved and
    each half tried in turn, until it succeeds or is a single item, which comes back with
    None. The groups come back in order and together hold every item once: joined, they
    are ``items``. ``attempt`` runs on plain data (no transaction is open around it)."""
    done: list[tuple[Sequence[T], R | None]] = []
    pending: list[Sequence[T]] = [items] if items else []  # a stack: the next group last
    while pending:
        group = pending.pop()
        result = attempt(group)
        if result is not None or len(group) == 1:
            done.append((group, result))
            continue
        middle = len(group) // 2
        pending.extend((group[middle:], group[:middle]))
    return done


@dataclass(frozen=True, slots=True)
class Lost:
    """A closed batch about to be deleted unsent, as its eviction notice needs it."""

    epoch: int
    seq: int
    last_ms: int  # its latest record time
    records: int
    cause: str


def eviction_notices(lost: Iterable[Lost]) -> tuple[Event, ...]:
    """One eviction notice per run of consecutive seqs of one epoch and cause, each run at
    most MAX_NOTICE_SEQS long (what the collector accepts from one notice)."""
    runs: list[list[int]] = []  # [epoch, first seq, last seq, last_ms, records]
    causes: list[str] = []
    for item in sorted(lost, key=lambda x: (x.epoch, x.seq)):
        run = runs[-1] if runs else None
        if (
            run is not None
            and (run[0], run[2] + 1, causes[-1]) == (item.epoch, item.seq, item.cause)
            and item.seq - run[1] < MAX_NOTICE_SEQS
        ):
            run[2], run[3], run[4] = item.seq, max(run[3], item.last_ms), run[4] + item.records
        else:
            runs.append([item.epoch, item.seq, item.seq, item.last_ms, item.records])
            causes.append(item.cause)
    return tuple(
        eviction_notice(
            epoch=epoch, first_seq=first, last_seq=last, time_ms=t, records=n, cause=cause
        )
        for (epoch, first, last, t, n), cause in zip(runs, causes, strict=True)
    )


@dataclass(frozen=True, slots=True, order=True)
class Candidate:
    """A stored batch that may be evicted. Ordering is eviction order: lowest priority
    first, then oldest (lowest seq) first."""

    priority: int
    seq: int
    nbytes: int


C = TypeVar("C", bound=Candidate)


def choose_victims(
    candidates: Iterable[C], bytes_to_free: int, *, below_priority: int | None = None
) -> list[C]:
    """The batches to evict to free at least ``bytes_to_free`` bytes, in eviction order,
    only among those of a priority below ``below_priority`` if given.

    If even all candidates are not enough, all of them are returned: the caller has done
    what it can and the cap is exceeded only by what cannot be evicted (staged records).
    """
    if bytes_to_free <= 0:
        return []
    victims: list[C] = []
    freed = 0
    allowed = (c for c in candidates if below_priority is None or c.priority < below_priority)
    for candidate in sorted(allowed):
        if freed >= bytes_to_free:
            break
        victims.append(candidate)
        freed += candidate.nbytes
    return victims


def eviction_counters(victims: Iterable[Candidate], cause: str) -> dict[str, int]:
    """Counter increments for evicting ``victims`` for ``cause``: batches per
    EVICTION_CAUSE name, and EVICTED_FOR_SPACE when the disk's free space was the cause."""
    counters: dict[str, int] = {}
    for victim in victims:
        name = EVICTION_CAUSE[victim.priority]
        counters[name] = counters.get(name, 0) + 1
    if cause == CAUSE_SPACE and counters:
        counters[EVICTED_FOR_SPACE] = sum(counters.values())
    return counters


@dataclass(frozen=True, slots=True)
class EvictionNeed:
    """How many bytes of batches to evict, and why (``CAUSE_CAP`` or ``CAUSE_SPACE``)."""

    nbytes: int
    cause: str


def eviction_need(
    *,
    stored_bytes: int,
    max_bytes: int,
    free_bytes: int | None,
    reserve_bytes: int,
    reusable_bytes: int,
    room_bytes: int = ROOM_IN_FILE_BYTES,
) -> EvictionNeed:
    """Bytes to evict so the outbox holds at most ``max_bytes`` (``stored_bytes``:
    batches and staged records) and, while its filesystem has less than
    ``reserve_bytes`` free, stops growing.

    ``free_bytes`` is what the filesystem has free for this process (None: unknown, no
    space trigger); ``reusable_bytes`` the free pages inside the database file, which
    new records take before the file grows. Below the reserve, batches are evicted (bulk
    before health before events, oldest first) until ``room_bytes`` are reusable: new
    records then replace old ones inside the file, and SQLite never has to grow it, so it
    can still write and checkpoint when the disk fills up completely. Evicting more would
    free nothing on the filesystem (SQLite does not shrink its file), only lose data.
    """
    cap = max(0, stored_bytes - max_bytes)
    space = 0
    if free_bytes is not None and free_bytes < reserve_bytes:
        space = max(0, room_bytes - reusable_bytes)
    if space > cap:
        return EvictionNeed(space, CAUSE_SPACE)
    return EvictionNeed(cap, CAUSE_CAP)
