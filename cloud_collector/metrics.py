"""In-process metrics and their Prometheus text exposition (format 0.0.4), written by hand.

The format is small (HELP, TYPE, one ``name{labels} value`` line per series), so a library
is not worth a dependency. Label values here come from fixed vocabularies (channels,
protocol reasons), never from payload data, so cardinality stays bounded. The
per-vehicle health gauges carry a ``vehicle`` label (ids checked against the topic; one
series per vehicle and gauge, fine for a fleet of hundreds).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from cloud_collector.alerts import KINDS, Alert, Derived

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

# Commit latency buckets, seconds: SQLite commits take ~0.1-5 ms, PostgreSQL a few ms.
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass
class Histogram:
    """A cumulative Prometheus histogram with fixed buckets."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.n += 1
        self.total += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break

    def lines(self, name: str) -> Iterable[str]:
        running = 0
        for bound, count in zip(self.buckets, self.counts, strict=True):
            running += count
            yield f'{name}_bucket{{le="{_num(bound)}"}} {running}'
        yield f'{name}_bucket{{le="+Inf"}} {self.n}'
        yield f"{name}_sum {_num(self.total)}"
        yield f"{name}_count {self.n}"


@dataclass
class IngestMetrics:
    """Counters the ingest loop updates; read by /metrics and /readyz."""

    received: Counter[str] = field(default_factory=Counter)  # by channel
    stored: Counter[str] = field(default_factory=Counter)  # new batches, by channel
    duplicates: Counter[str] = field(default_factory=Counter)  # by channel
    records: int = 0  # records in new batches
    payload_bytes: int = 0  # bytes of new batches
    quarantined: Counter[str] = field(default_factory=Counter)  # by reason
    # What quarantine did with a rejected payload (QUARANTINE_* of the store), and what
    # was dropped before any database work, by cause (DROP_*).
    quarantine_outcomes: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    retained_cleared: int = 0  # quarantined retained messages cleared at the broker
    clock_ahead: int = 0  # messages stamped past the collector's clock (beyond the skew)
    presence: Counter[str] = field(default_factory=Counter)  # by state
    acks_sent: int = 0
    store_errors: int = 0
    connects: int = 0
    connected: bool = False
    commit_seconds: Histogram = field(default_factory=Histogram)
    # Collector clock at commit minus the batch's ``sent`` (agent clock), last seen, ms.
    ack_lag_ms: float = 0.0
    ack_lag_seconds: Histogram = field(
        default_factory=lambda: Histogram((0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0))
    )
    # Retention (``retention_job``): rows deleted and partitions dropped or created, by
    # table; the wall clock of the last complete run (0: none yet), failed runs.
    retention_deleted: Counter[str] = field(default_factory=Counter)
    partitions_dropped: Counter[str] = field(default_factory=Counter)
    partitions_created: Counter[str] = field(default_factory=Counter)
    retention_last_run_ms: int = 0
    retention_failures: int = 0


@dataclass(frozen=True, slots=True)
class FleetFigures:
    """Alert counts by kind and per-vehicle gauges, computed for one scrape."""

    alerts_active: dict[str, int]
    # gauge name -> (vehicle, value); vehicles without a value are left out
    per_vehicle: dict[str, list[tuple[str, float]]]

    @classmethod
    def of(cls, rows: Iterable[tuple[str, Derived, list[Alert]]]) -> FleetFigures:
        active = dict.fromkeys(KINDS, 0)
        gauges: dict[str, list[tuple[str, float]]] = {name: [] for name, _ in VEHICLE_GAUGES}
        for vehicle, d, alerts in rows:
            for a in alerts:
                active[a.kind] = active.get(a.kind, 0) + 1
            figures: dict[str, float | None] = {
                "vehicle_online": None if d.status == "unknown" else float(d.status == "online"),
                "vehicle_backlog_batches": d.backlog_batches,
                "vehicle_backlog_age_seconds": d.backlog_age_s,
                "vehicle_lag_seconds": d.lag_s,
                "vehicle_seq_gaps": d.seq_gaps,
                "vehicle_duplicate_ratio": d.duplicate_ratio,
                "vehicle_data_today_bytes": d.data_today_bytes,
                "vehicle_data_month_bytes": d.data_month_bytes,
                "vehicle_alerts_active": len(alerts),
                "vehicle_clock_ahead_seconds": d.clock_ahead_s,
            }
            for name, value in figures.items():
                if value is not None:
                    gauges[name].append((vehicle, value))
        return cls(active, gauges)


VEHICLE_GAUGES: Final = (
    ("vehicle_online", "1 online, 0 offline (vehicles with a status message)."),
    ("vehicle_backlog_batches", "Batches pending in the agent's outbox (latest health)."),
    ("vehicle_backlog_age_seconds", "Age of the oldest pending outbox record (latest health)."),
    ("vehicle_lag_seconds", "Latest receive time minus the newest record time received."),
    ("vehicle_seq_gaps", "Missing seqs below the highest received seq, all epochs."),
    ("vehicle_duplicate_ratio", "Duplicate batches / batches received."),
    ("vehicle_data_today_bytes", "Payload bytes received this UTC day."),
    ("vehicle_data_month_bytes", "Payload bytes received this UTC month."),
    ("vehicle_alerts_active", "Active alerts of the vehicle."),
    (
        "vehicle_clock_ahead_seconds",
        "How far past the collector's clock the vehicle's times ran, recently (0: not seen).",
    ),
)


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sanitize(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


class _Writer:
    def __init__(self) -> None:
        self.out: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.out.append(f"# HELP {name} {help_text}")
        self.out.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        if labels:
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            self.out.append(f"{name}{{{inner}}} {_num(value)}")
        else:
            self.out.append(f"{name} {_num(value)}")

    def labelled(self, name: str, kind: str, help_text: str, label: str, c: Counter[str]) -> None:
        self.family(name, kind, help_text)
        for key in sorted(c):
            self.sample(name, c[key], {label: key})


# The labelled ingest counters, in exposition order: name, help, label, the counter.
_LABELLED: Final[tuple[tuple[str, str, str, Callable[[IngestMetrics], Counter[str]]], ...]] = (
    ("collector_messages_received_total", "MQTT messages received.", "channel",
     lambda m: m.received),
    ("collector_batches_stored_total", "New batches committed.", "channel", lambda m: m.stored),
    ("collector_batches_duplicate_total", "Duplicate batches (already stored).", "channel",
     lambda m: m.duplicates),
    ("collector_quarantined_total", "Payloads quarantined, by reason.", "reason",
     lambda m: m.quarantined),
    ("collector_presence_updates_total", "Status messages applied.", "state",
     lambda m: m.presence),
    ("collector_quarantine_outcomes_total",
     "What quarantine did with rejected payloads: stored, over_cap (counted only),"
     " repeat (a retained payload already stored).", "outcome",
     lambda m: m.quarantine_outcomes),
    ("collector_dropped_total",
     "Messages dropped before any database work, by cause (a sender over its budget).",
     "cause", lambda m: m.dropped),
    ("collector_retention_rows_deleted_total",
     "Rows deleted by retention (dropped partitions not counted), by table.", "table",
     lambda m: m.retention_deleted),
    ("collector_retention_partitions_dropped_total", "Expired partitions dropped, by table.",
     "table", lambda m: m.partitions_dropped),
    ("collector_partitions_created_total", "Time partitions created, by table.", "table",
     lambda m: m.partitions_created),
)  # fmt: skip

# The unlabelled ingest counters and gauges after them: name, kind, help, the value.
_SCALARS: Final[tuple[tuple[str, str, str, Callable[[IngestMetrics], float]], ...]] = (
    ("collector_retained_cleared_total", "counter", "Quarantined retained messages cleared.",
     lambda m: m.retained_cleared),
    ("collector_clock_ahead_total", "counter",
     "Messages whose times ran past the collector's clock beyond the allowed skew.",
     lambda m: m.clock_ahead),
    ("collector_records_stored_total", "counter", "Records in new batches.",
     lambda m: m.records),
    ("collector_payload_bytes_stored_total", "counter", "Payload bytes of new batches.",
     lambda m: m.payload_bytes),
    ("collector_acks_sent_total", "counter", "End-to-end acks published.",
     lambda m: m.acks_sent),
    ("collector_store_errors_total", "counter", "Store failures (message redelivered).",
     lambda m: m.store_errors),
    ("collector_mqtt_connects_total", "counter", "Successful MQTT connections.",
     lambda m: m.connects),
    ("collector_mqtt_connected", "gauge", "1 while connected to the broker.",
     lambda m: int(m.connected)),
    ("collector_retention_last_run_timestamp_seconds", "gauge",
     "Wall clock of the last complete retention run (0: none yet).",
     lambda m: m.retention_last_run_ms / 1000),
    ("collector_retention_failures_total", "counter", "Retention runs that failed.",
     lambda m: m.retention_failures),
)  # fmt: skip


def _ingest_families(w: _Writer, m: IngestMetrics) -> None:
    for name, help_text, label, counter in _LABELLED:
        w.labelled(name, "counter", help_text, label, counter(m))
    for name, kind, help_text, value in _SCALARS:
        w.family(name, kind, help_text)
        w.sample(name, value(m))
    w.family("collector_commit_seconds", "histogram", "Store transaction time per message.")
    w.out.extend(m.commit_seconds.lines("collector_commit_seconds"))
    w.family("collector_ack_lag_seconds", "histogram", "Commit time minus the batch's sent time.")
    w.out.extend(m.ack_lag_seconds.lines("collector_ack_lag_seconds"))
    w.family("collector_last_ack_lag_ms", "gauge", "Ack lag of the last stored batch, ms.")
    w.sample("collector_last_ack_lag_ms", m.ack_lag_ms)


def _store_families(w: _Writer, store_metrics: Mapping[str, object]) -> None:
    for key, value in sorted(store_metrics.items()):
        # Numbers only: the store may report text details that are not metrics.
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        name = "collector_store_" + _sanitize(key)
        w.family(name, "gauge", f"Store figure '{_sanitize(key)}'.")
        w.sample(name, value)


def _fleet_families(w: _Writer, fleet: FleetFigures) -> None:
    w.family("collector_alerts_active", "gauge", "Active vehicle health alerts, by kind.")
    for kind in sorted(fleet.alerts_active):
        w.sample("collector_alerts_active", fleet.alerts_active[kind], {"kind": kind})
    for name, help_text in VEHICLE_GAUGES:
        w.family(name, "gauge", help_text)
        for vehicle, value in fleet.per_vehicle.get(name, []):
            w.sample(name, value, {"vehicle": vehicle})


def _http_families(w: _Writer, in_progress: int, refused: Counter[str]) -> None:
    w.family("collector_http_requests_in_progress", "gauge", "API requests being answered.")
    w.sample("collector_http_requests_in_progress", in_progress)
    w.labelled(
        "collector_http_refused_total", "counter",
        "API requests refused with a 429, by limit: rate, client_concurrency (after"
        " authentication, in the audit log), concurrency (the overall limit, before it).",
        "limit", refused,
    )  # fmt: skip


def render(
    m: IngestMetrics,
    store_metrics: Mapping[str, object] | None = None,
    fleet: FleetFigures | None = None,
    http: tuple[int, Counter[str]] | None = None,
) -> str:
    """The whole exposition text; ``http``: API requests in progress and refusals."""
    w = _Writer()
    _ingest_families(w, m)
    _store_families(w, store_metrics or {})
    if fleet is not None:
        _fleet_families(w, fleet)
    if http is not None:
        _http_families(w, *http)
    return "\n".join(w.out) + "\n"
