"""The names both sides agree on beyond the wire format: event types and their lane, the
keys of a health snapshot, and the vehicle signals the road aggregates read.

Pure data. The agent emits these names and the collector aggregates and alerts on them,
so a name lives here once and both sides import it: renaming one on one side only breaks
an import or a contract test instead of silently zeroing a road-condition share.
``docs/health.md``'s key tables and the dashboard's labels are generated from this
module (``python scripts/gen_contracts.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from protocol.notices import EVICTION_NOTICE
from protocol.records import Scalar

# -- event types -----------------------------------------------------------------------

Lane = Literal["urgent", "bulk"]
# Someone (dispatcher, safety team) may act on an urgent event within seconds: it goes
# out on the "event" channel within the urgent batch age, ahead of bulk.
URGENT: Final = "urgent"
# Describes the drive; nobody acts on it in real time, and it is frequent enough that
# sending each within a second would cost many small messages.
BULK: Final = "bulk"

Origin = Literal["camera", "vehicle", "outbox"]


@dataclass(frozen=True, slots=True)
class EventType:
    name: str  # ``Event.type`` on the wire
    lane: Lane
    label: str  # a few words for people (dashboard, docs)
    origin: Origin  # what produces it: the camera's or the vehicle's CAN, or the outbox


FCW: Final = EventType("fcw", URGENT, "forward collision warning", "camera")
PCW: Final = EventType("pcw", URGENT, "pedestrian collision warning", "camera")
PEDS_IN_DZ: Final = EventType("peds_in_dz", URGENT, "pedestrian in the danger zone", "camera")
LDW_LEFT: Final = EventType("ldw_left", URGENT, "lane departure, left", "camera")
LDW_RIGHT: Final = EventType("ldw_right", URGENT, "lane departure, right", "camera")
HEADWAY_WARNING: Final = EventType("headway_warning", URGENT, "headway too short", "camera")
OVERSPEED: Final = EventType("overspeed", URGENT, "over the speed limit", "camera")
CAMERA_FAILSAFE: Final = EventType("camera_failsafe", URGENT, "camera blind (failsafe)", "camera")
CAMERA_TAMPER: Final = EventType("camera_tamper", URGENT, "camera tampered with", "camera")
CAMERA_MAINTENANCE: Final = EventType(
    "camera_maintenance", BULK, "camera needs maintenance", "camera"
)
TSR_SIGN: Final = EventType("tsr_sign", BULK, "traffic sign recognised", "camera")
HARSH_BRAKING: Final = EventType("harsh_braking", URGENT, "harsh braking", "vehicle")
WIPERS_ON: Final = EventType("wipers_on", BULK, "wipers switched on", "vehicle")
# Staged straight into the urgent lane by the outbox when it loses closed batches
# (protocol/notices.py), never by the extractors.
OUTBOX_EVICTED: Final = EventType(EVICTION_NOTICE, URGENT, "records lost on the gateway", "outbox")

EVENT_TYPES: Final = (
    FCW, PCW, PEDS_IN_DZ, LDW_LEFT, LDW_RIGHT, HEADWAY_WARNING, OVERSPEED, CAMERA_FAILSAFE,
    CAMERA_TAMPER, CAMERA_MAINTENANCE, TSR_SIGN, HARSH_BRAKING, WIPERS_ON, OUTBOX_EVICTED,
)  # fmt: skip
EVENT_TYPE_NAMES: Final = frozenset(e.name for e in EVENT_TYPES)
# What the extractors emit from CAN data.
EXTRACTED_EVENT_TYPES: Final = frozenset(e.name for e in EVENT_TYPES if e.origin != "outbox")
# The outbox's urgent lane takes these from the pipeline's records.
URGENT_EVENT_TYPES: Final = frozenset(
    e.name for e in EVENT_TYPES if e.lane == URGENT and e.origin != "outbox"
)

# Event attribute: the type of the earlier event whose situation this one continues (an
# FCW after a headway warning, a PCW after a pedestrian in the zone). The road aggregates
# count such an event under its type but not as another situation (docs/events.md).
SITUATION_JOINS: Final = "joins"


def event_type(name: str) -> EventType | None:
    return _EVENTS_BY_NAME.get(name)


_EVENTS_BY_NAME: Final = {e.name: e for e in EVENT_TYPES}

# -- vehicle signals the road aggregates read ------------------------------------------


def split_signal(name: str) -> tuple[str, str]:
    """``"CGW1.CF_Gway_WiperIntSw"`` -> ``("CGW1", "CF_Gway_WiperIntSw")``."""
    message, _, signal = name.partition(".")
    return message, signal


@dataclass(frozen=True, slots=True)
class VehicleSignal:
    name: str  # "<DBC message>.<DBC signal>", the name of the thinned series
    feeds: str  # what it feeds on the collector's side

    @property
    def message(self) -> str:
        return split_signal(self.name)[0]

    @property
    def signal(self) -> str:
        return split_signal(self.name)[1]


WIPER_INT_SW: Final = "CGW1.CF_Gway_WiperIntSw"
WIPER_LOW_SW: Final = "CGW1.CF_Gway_WiperLowSw"
WIPER_HIGH_SW: Final = "CGW1.CF_Gway_WiperHighSw"
CAMERA_FAILSAFE_FLAG: Final = "ME_Display_Warnings.failsafe"
LANE_QUALITY_LEFT: Final = "ME_LKA_Left_Lane_A.quality"
LANE_QUALITY_RIGHT: Final = "ME_LKA_Right_Lane_A.quality"

# Order matters: a wiper switch's index is its bit in the collector's per-vehicle state.
WIPER_SIGNALS: Final = (WIPER_INT_SW, WIPER_LOW_SW, WIPER_HIGH_SW)
LANE_SIGNALS: Final = (LANE_QUALITY_LEFT, LANE_QUALITY_RIGHT)

ROAD_SIGNALS: Final = (
    VehicleSignal(WIPER_INT_SW, "wipers share of road cells (any switch != 0)"),
    VehicleSignal(WIPER_LOW_SW, "wipers share of road cells (any switch != 0)"),
    VehicleSignal(WIPER_HIGH_SW, "wipers share of road cells (any switch != 0)"),
    VehicleSignal(CAMERA_FAILSAFE_FLAG, "failsafe share of road cells, camera_failsafe alert"),
    VehicleSignal(LANE_QUALITY_LEFT, "lane-quality share of road cells (quality >= 2)"),
    VehicleSignal(LANE_QUALITY_RIGHT, "lane-quality share of road cells (quality >= 2)"),
)
ROAD_SIGNAL_NAMES: Final = frozenset(s.name for s in ROAD_SIGNALS)

# -- health snapshot keys --------------------------------------------------------------

HealthType = Literal["int", "float", "bool", "str"]


@dataclass(frozen=True, slots=True)
class HealthKey:
    """One key of a ``Health`` record. ``<name>`` in a name stands for a configured bus's
    name, ``<reason>`` for a gpsd malformed-report reason."""

    name: str
    type: HealthType
    unit: str  # "" when the value has none (a count, a flag, text)
    meaning: str  # one line, Markdown
    nullable: bool = False  # present with null while unknown
    state: bool = False  # a change takes a ``change:<keys>`` snapshot
    label: str = ""  # for charts; empty: the name with spaces

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ")

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(re.sub(r"<[a-z]+>", "[A-Za-z0-9_-]+", self.name) + r"\Z")


def _key(
    name: str,
    type_: HealthType,
    unit: str,
    meaning: str,
    *,
    nullable: bool = False,
    state: bool = False,
    label: str = "",
) -> HealthKey:
    return HealthKey(name, type_, unit, meaning, nullable, state, label)


# Names the code on either side reads or writes by name.
HEALTH_REASON: Final = "health_reason"
UPLINK_CONNECTED: Final = "uplink_connected"
GNSS_FIX: Final = "gnss_fix"
CAMERA_FAILSAFE_KEY: Final = "camera_failsafe"
CAMERA_TAMPER_KEY: Final = "camera_tamper"
CLOCK_INVALID: Final = "clock_invalid"
CLOCK_OFFSET_MS: Final = "clock_offset_ms"
DISK_FULL: Final = "disk_full"
DISK_FREE_BYTES: Final = "disk_free_bytes"
DISK_RESERVE_BYTES: Final = "disk_reserve_bytes"
OUTBOX_WRITE_FAILURES: Final = "outbox_write_failures"
OUTBOX_HELD_RECORDS: Final = "outbox_held_records"
OUTBOX_DROPPED_HELD: Final = "outbox_dropped_held"
OUTBOX_PENDING_BATCHES: Final = "outbox_pending_batches"
OUTBOX_PENDING_BYTES: Final = "outbox_pending_bytes"
OUTBOX_OLDEST_AGE_MS: Final = "outbox_oldest_age_ms"
UPLINK_RATE: Final = "uplink_rate_bytes_per_s"
UPLINK_PUBLISH_TIMEOUTS: Final = "uplink_publish_timeouts"
BYTES_SENT_TODAY: Final = "bytes_sent_today"
BUS_ACTIVE: Final = "bus_<name>_active"
# The agent's other keys, by the names its code uses.
HEALTH_INTERVAL_S: Final = "health_interval_s"
AGENT_MODE: Final = "agent_mode"
AGENT_VERSION: Final = "agent_version"
CONFIG_HASH: Final = "config_hash"
UPTIME_S: Final = "uptime_s"
CPU_S: Final = "cpu_s"
CPU_PCT: Final = "cpu_pct"
RSS_BYTES: Final = "rss_bytes"
OUTBOX_UNPUBLISHED_BATCHES: Final = "outbox_unpublished_batches"
OUTBOX_STAGED_RECORDS: Final = "outbox_staged_records"
OUTBOX_STAGED_BYTES: Final = "outbox_staged_bytes"
ACKED_SEQ: Final = "acked_seq"
NEXT_SEQ: Final = "next_seq"
EVICTED_RECORDS: Final = "evicted_records"
DROPPED_INVALID: Final = "dropped_invalid"
RECONNECTS: Final = "reconnects"
UPLINK_CONNECTS: Final = "uplink_connects"
UPLINK_CONNECT_FAILURES: Final = "uplink_connect_failures"
UPLINK_DISCONNECTS: Final = "uplink_disconnects"
UPLINK_PUBLISHED: Final = "uplink_published"
UPLINK_PUBLISHED_BYTES: Final = "uplink_published_bytes"
UPLINK_RESENT: Final = "uplink_resent"
UPLINK_ACKS: Final = "uplink_acks"
UPLINK_ACKED_BATCHES: Final = "uplink_acked_batches"
PUBACK_RTT_MS: Final = "puback_rtt_ms"
ACK_RTT_MS: Final = "ack_rtt_ms"
DECODE_ERRORS: Final = "decode_errors"
ERROR_FRAMES: Final = "error_frames"
SOURCE_DROPPED_FRAMES: Final = "source_dropped_frames"
REPLAY_MALFORMED_LINES: Final = "replay_malformed_lines"
GNSS_MODE: Final = "gnss_mode"
INTEGRITY_KEYS: Final = ("dropped_corrupt", "meta_repairs", "epoch_restarts")

IDENTITY_KEYS: Final = (
    _key(HEALTH_REASON, "str", "", "why this snapshot was taken (table above)"),
    _key(
        HEALTH_INTERVAL_S,
        "float",
        "s",
        "the configured `[health] interval_s` (lets a reader judge staleness)",
    ),
    _key(AGENT_MODE, "str", "", "`run` or `replay`"),
    _key(
        AGENT_VERSION,
        "str",
        "",
        "version of the installed `taxi-edge-agent` distribution, `unknown` if not installed",
    ),
    _key(CONFIG_HASH, "str", "", "first 12 hex digits of the SHA-256 of the config file's bytes"),
    _key(
        UPTIME_S,
        "float",
        "s",
        "seconds since the agent process started (monotonic)",
        label="uptime",
    ),
    _key(
        CPU_S,
        "float",
        "s",
        "process CPU time, user + system, seconds since start",
        label="CPU time",
    ),
    _key(
        CPU_PCT,
        "float",
        "%",
        "CPU use over the interval since the previous snapshot, % of one core",
        nullable=True,
        label="CPU",
    ),
    _key(
        RSS_BYTES,
        "int",
        "bytes",
        "resident set size (`/proc/self/statm`)",
        nullable=True,
        label="memory resident",
    ),
    _key(
        DISK_FREE_BYTES,
        "int",
        "bytes",
        "free bytes on the filesystem holding the outbox (for the agent's user: root's "
        "reserved blocks not counted)",
        nullable=True,
        label="disk free",
    ),
    _key(
        DISK_RESERVE_BYTES,
        "int",
        "bytes",
        "the free-space reserve in force: `[outbox] reserve_bytes`, at most half the filesystem",
        label="disk reserve",
    ),
    _key(
        DISK_FULL,
        "bool",
        "",
        "the last outbox write failed for lack of space: records are held in memory",
        state=True,
        label="disk full",
    ),
    _key(
        OUTBOX_WRITE_FAILURES,
        "int",
        "",
        "outbox writes that failed for lack of space, since start (each retry counts)",
    ),
    _key(
        OUTBOX_HELD_RECORDS,
        "int",
        "",
        "records held in memory because the disk was full, waiting for room",
    ),
    _key(
        OUTBOX_DROPPED_HELD,
        "int",
        "",
        "records dropped from that memory because it was full (cheapest first), since start",
    ),
)

OUTBOX_KEYS: Final = (
    _key(
        OUTBOX_PENDING_BATCHES,
        "int",
        "",
        "closed batches not yet acknowledged end to end",
        label="agent backlog, batches",
    ),
    _key(OUTBOX_PENDING_BYTES, "int", "bytes", "their size in bytes", label="agent backlog"),
    _key(OUTBOX_UNPUBLISHED_BATCHES, "int", "", "of those, never PUBACKed by the broker"),
    _key(OUTBOX_STAGED_RECORDS, "int", "", "records not yet closed into a batch"),
    _key(OUTBOX_STAGED_BYTES, "int", "bytes", "their size"),
    _key(
        OUTBOX_OLDEST_AGE_MS,
        "int",
        "ms",
        "age of the oldest record in a closed batch not yet acknowledged (its record time; "
        "for a replay that is recording time); 0 when no batch is pending",
        label="agent backlog age",
    ),
    _key(ACKED_SEQ, "int", "", "highest seq acknowledged end to end (current epoch)"),
    _key(NEXT_SEQ, "int", "", "seq the next batch will get"),
    _key(
        "evicted_bulk",
        "int",
        "",
        "bulk batches evicted, for either cause (cumulative over the outbox file's life)",
    ),
    _key(
        "evicted_health",
        "int",
        "",
        "health batches evicted, for either cause (cumulative over the outbox file's life)",
    ),
    _key(
        "evicted_event",
        "int",
        "",
        "urgent event batches evicted, for either cause (cumulative over the outbox file's life)",
    ),
    _key(
        "evicted_for_space",
        "int",
        "",
        "of those, batches evicted because the filesystem had less than the reserve free "
        "(the rest: the byte cap)",
    ),
    _key(EVICTED_RECORDS, "int", "", "records in evicted batches"),
    _key(DROPPED_INVALID, "int", "", "records dropped because they could never be encoded"),
    _key(
        "dropped_corrupt",
        "int",
        "",
        "records of stored batches whose bytes no longer matched the checksum taken when "
        "they were closed (a damaged file): removed instead of published, each logged at "
        "error level with its `(epoch, seq)`. Any value above 0 means data was lost on "
        "the gateway's storage",
    ),
    _key(
        "meta_repairs",
        "int",
        "",
        "opens that found the outbox's stored epoch, next seq or acknowledged seq damaged"
        " or inconsistent with the batches present (logged as `OUTBOX META DAMAGED`); new"
        " batches then got a new epoch",
    ),
    _key(
        "epoch_restarts",
        "int",
        "",
        "new epochs started so that no `(epoch, seq)` is ever issued twice: after every "
        "unclean stop (killed, power cut, crash: the last commits may not have survived) "
        "and after damaged meta values. Stored batches keep the epoch they were encoded "
        "with",
    ),
)

UPLINK_KEYS: Final = (
    _key(
        UPLINK_CONNECTED,
        "bool",
        "",
        "an MQTT session is up",
        state=True,
        label="uplink connected",
    ),
    _key(RECONNECTS, "int", "", "successful connects after the first, since start"),
    _key(UPLINK_CONNECTS, "int", "", "MQTT sessions opened, since start"),
    _key(UPLINK_CONNECT_FAILURES, "int", "", "connect attempts that failed, since start"),
    _key(UPLINK_DISCONNECTS, "int", "", "sessions lost or closed, since start"),
    _key(UPLINK_PUBLISHED, "int", "", "batches PUBACKed, since start"),
    _key(
        UPLINK_PUBLISHED_BYTES,
        "int",
        "bytes",
        "payload bytes PUBACKed, since start",
        label="published",
    ),
    _key(
        UPLINK_RESENT,
        "int",
        "",
        "batches published again (no end-to-end ack in time), since start",
    ),
    _key(UPLINK_ACKS, "int", "", "end-to-end acks received, since start"),
    _key(UPLINK_ACKED_BATCHES, "int", "", "batches those acks deleted, since start"),
    _key(
        PUBACK_RTT_MS,
        "int",
        "ms",
        "last publish -> PUBACK time",
        nullable=True,
        label="PUBACK round trip",
    ),
    _key(
        ACK_RTT_MS,
        "int",
        "ms",
        "last end-to-end round trip: publish of the highest seq an ack covered -> that ack",
        nullable=True,
        label="end-to-end ack round trip",
    ),
    _key(
        UPLINK_RATE,
        "int",
        "bytes/s",
        "the uplink's estimate of what the link delivers, from PUBACKs (sets the in-"
        "flight window and publish timeouts, docs/uplink.md); `null` until the first "
        "PUBACK",
        nullable=True,
        label="link rate",
    ),
    _key(
        UPLINK_PUBLISH_TIMEOUTS,
        "int",
        "",
        "publishes whose PUBACK did not come within their (rate-stretched) timeout; each "
        "ends the session",
    ),
    _key(
        BYTES_SENT_TODAY,
        "int",
        "bytes",
        "payload bytes PUBACKed since 00:00 UTC (or since the agent started, if later: "
        "the count restarts with the process)",
        label="agent data sent today",
    ),
)

BUS_KEYS: Final = (
    _key(
        "bus_<name>_fps",
        "float",
        "frames/s",
        "frames per second over the interval since the previous snapshot",
    ),
    _key("bus_<name>_frames", "int", "", "frames handed to the pipeline since start"),
    _key("bus_<name>_error_frames", "int", "", "CAN error frames since start"),
    _key("bus_<name>_decode_errors", "int", "", "frames of a known id that did not decode"),
    _key("bus_<name>_unknown_id", "int", "", "frames whose id is not in the bus's DBC"),
    _key(BUS_ACTIVE, "bool", "", "a frame within `bus_silent_after_s`", state=True),
    _key(
        "bus_<name>_dropped",
        "int",
        "",
        "frames of a live bus dropped since start because its reader's queue was full (the "
        "pipeline fell behind); 0 for a recording",
    ),
    _key(DECODE_ERRORS, "int", "", "frames of a known id that did not decode, all buses"),
    _key(ERROR_FRAMES, "int", "", "CAN error frames, all buses"),
    _key(SOURCE_DROPPED_FRAMES, "int", "", "`bus_<name>_dropped` summed over all buses"),
    _key(
        REPLAY_MALFORMED_LINES,
        "int",
        "",
        "lines of the recording(s) read so far that were skipped as unreadable (`edge-agent "
        "replay`, and `replay` buses of `run`); 0 for live buses",
    ),
)

GNSS_CAMERA_KEYS: Final = (
    _key(
        GNSS_MODE,
        "int",
        "",
        "gpsd mode: 0 unknown (also gpsd unreachable), 1 no fix, 2 2D, 3 3D; in replay "
        "with `[gnss] nmea`, the mode of the last fix fed; `null` without a `[gnss]` "
        "section",
        nullable=True,
        label="GNSS mode",
    ),
    _key(GNSS_FIX, "bool", "", "`gnss_mode >= 2`", nullable=True, state=True, label="GNSS fix"),
    _key(
        CLOCK_OFFSET_MS,
        "int",
        "ms",
        "system clock minus GNSS time at the last fix (`GnssFix.clock_offset_ms`); gpsd "
        "only, `null` for a track file",
        nullable=True,
        label="clock offset",
    ),
    _key(
        CLOCK_INVALID,
        "bool",
        "",
        "the gateway's wall clock is obviously wrong: before 2024-01-01 UTC (a dead or "
        "unset RTC, also before 1970) or past the wire format's largest time (2^53 - 1 "
        "ms). Correcting the clock takes a `change:clock_invalid` snapshot. While true, "
        "wall-clock stamps (status, health, live-bus records) are clamped into `[0, 2^53 "
        "- 1]` ms, so a clock before 1970 stamps `0`; the records are kept, but their "
        "times mean nothing. A clock a few years ahead is not detectable on the gateway "
        "alone.",
        state=True,
        label="clock invalid",
    ),
    _key(
        "gnss_connected",
        "int",
        "",
        "1 while connected to gpsd (`run` with gpsd only, like every `gnss_` counter below)",
    ),
    _key("gnss_fix_mode", "int", "", "gpsd's mode in its last TPV report (0 while disconnected)"),
    _key(
        "gnss_fixes",
        "int",
        "",
        "fixes delivered to the pipeline, since start",
        label="GNSS fixes",
    ),
    _key("gnss_reconnects", "int", "", "connections to gpsd after the first, since start"),
    _key("gnss_connect_failures", "int", "", "failed connects to gpsd, since start"),
    _key("gnss_disconnects", "int", "", "connections to gpsd lost, since start"),
    _key(
        "gnss_protocol_errors",
        "int",
        "",
        "connections whose first line was not gpsd's banner (the wrong port), since start",
    ),
    _key(
        "gnss_merged_reports",
        "int",
        "",
        "TPV reports merged into the pending fix of their epoch, since start",
    ),
    _key(
        "gnss_late_reports",
        "int",
        "",
        "TPV reports of an epoch already delivered, merged into the latest fix only, since start",
    ),
    _key(
        "gnss_untimed_reports",
        "int",
        "",
        "2D/3D TPV reports without a time (gpsd before it knows the date), skipped, since start",
    ),
    _key(
        "gnss_malformed_<reason>",
        "int",
        "",
        "gpsd reports dropped as malformed, by reason, since start",
    ),
    _key(
        CAMERA_FAILSAFE_KEY,
        "bool",
        "",
        "the Mobileye's failsafe flag in its last warnings message (0x700); `null` until "
        "it reported",
        nullable=True,
        state=True,
        label="camera failsafe",
    ),
    _key(
        CAMERA_TAMPER_KEY,
        "bool",
        "",
        "the tamper alert flag of the same message",
        nullable=True,
        state=True,
        label="camera tamper",
    ),
)

EVIDENCE_DAY_CAP_BYTES: Final = "evidence_day_cap_bytes"
EVIDENCE_BYTES_TODAY: Final = "evidence_bytes_today"
EVIDENCE_EVENTS: Final = "evidence_events"
EVIDENCE_DROPPED_EVENTS: Final = "evidence_dropped_events"
EVIDENCE_DROPPED_BYTES: Final = "evidence_dropped_bytes"
EVIDENCE_RING_BYTES: Final = "evidence_ring_bytes"

EVIDENCE_KEYS: Final = (
    _key(
        EVIDENCE_DAY_CAP_BYTES,
        "int",
        "bytes",
        "`[evidence] day_cap_bytes`: raw evidence allowed per UTC day (frame data plus 16 "
        "bytes a frame, before compression); `null` when evidence is off",
        nullable=True,
        label="evidence cap per day",
    ),
    _key(
        EVIDENCE_BYTES_TODAY,
        "int",
        "bytes",
        "raw evidence of this UTC day's urgent events handed to the outbox, counted as the "
        "cap counts; `null` when evidence is off",
        nullable=True,
    ),
    _key(
        EVIDENCE_EVENTS,
        "int",
        "",
        "urgent events whose raw frames were handed to the outbox, since start",
    ),
    _key(
        EVIDENCE_DROPPED_EVENTS,
        "int",
        "",
        "urgent events whose raw frames were not kept: the day's cap was reached, or "
        "`[evidence] max_open` captures of the bus were still collecting, since start",
    ),
    _key(
        EVIDENCE_DROPPED_BYTES,
        "int",
        "bytes",
        "what the captures dropped at the cap would have cost (0 for those never started), "
        "since start",
    ),
    _key(
        EVIDENCE_RING_BYTES,
        "int",
        "bytes",
        "memory the rings of recent raw frames hold, all buses (each at most "
        "`[evidence] ring_bytes`)",
    ),
)

# Sections of docs/health.md, in order.
HEALTH_GROUPS: Final = (
    ("Identity and process", IDENTITY_KEYS),
    ("Outbox", OUTBOX_KEYS),
    ("Uplink", UPLINK_KEYS),
    ("Buses (one set per configured `[[bus]]`, `<name>` = `bus.name`)", BUS_KEYS),
    ("GNSS and camera", GNSS_CAMERA_KEYS),
    ("Raw evidence of urgent events (`[evidence]`)", EVIDENCE_KEYS),
)
HEALTH_KEYS: Final = tuple(k for _, keys in HEALTH_GROUPS for k in keys)
# A change of one of these takes a snapshot (``change:<keys>``).
STATE_KEYS: Final = tuple(k.name for k in HEALTH_KEYS if k.state)


def health_key(name: str) -> HealthKey | None:
    """The contract entry a snapshot key falls under (``bus_camera_fps`` under
    ``bus_<name>_fps``), or None for a key the contract does not define."""
    exact = _HEALTH_BY_NAME.get(name)
    if exact is not None:
        return exact
    return next((k for k in _HEALTH_TEMPLATES if k.pattern.match(name)), None)


def health_problems(values: Mapping[str, Scalar]) -> list[str]:
    """One line per key of a snapshot the contract does not define, or whose value is not
    of the contract's type (an int is a float too; null only where the key allows it)."""
    problems = []
    for name, value in values.items():
        key = health_key(name)
        if key is None:
            problems.append(f"{name}: not a health key of protocol/contracts.py")
        elif not _of_type(value, key):
            problems.append(f"{name}: {type(value).__name__} where {key.type} is expected")
    return problems


def _of_type(value: Scalar, key: HealthKey) -> bool:
    if value is None:
        return key.nullable
    if key.type == "bool" or isinstance(value, bool):
        return key.type == "bool" and isinstance(value, bool)
    if key.type == "float":
        return isinstance(value, int | float)
    return isinstance(value, int if key.type == "int" else str)


def bus_key(template: str, bus: str) -> str:
    """A per-bus key, e.g. ``bus_key(BUS_ACTIVE, "camera")`` -> ``bus_camera_active``."""
    return template.replace("<name>", bus)


_HEALTH_BY_NAME: Final = {k.name: k for k in HEALTH_KEYS}
# Longest first: bus_camera_error_frames is bus_<name>_error_frames, not bus_<name>_frames.
_HEALTH_TEMPLATES: Final = tuple(
    sorted((k for k in HEALTH_KEYS if "<" in k.name), key=lambda k: -len(k.name))
)
