"""Collector configuration: TOML, validated once, frozen.

Every key has an embedded default, so an empty file (or no file) runs a single-machine
collector: SQLite under ./var, mosquitto on 127.0.0.1:1883, the HTTP API on
127.0.0.1:8080. An error names the file, the key and what was expected, on one line.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from cloud_collector.errors import ConfigError
from cloud_collector.limits import networks
from cloud_collector.secrets import masked_url, url_password
from cloud_collector.store.retention import DAY_MS
from daemon_kit.private_files import readable_by_all

_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_HOST_PORT = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttConfig(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    # Shared-subscription group: every collector instance of one deployment uses the same.
    group: Annotated[str, Field(pattern=_ID_PATTERN)] = "collectors"
    # Stable per instance: the broker keeps the persistent session (and the unacknowledged
    # messages) under this id while the collector is down. A broker that binds client ids
    # to certificates (the shipped mosquitto: use_username_as_clientid) replaces it with
    # the certificate's CN, so there each instance needs its own certificate. No "/" is
    # allowed, so it never equals a vehicle's "<fleet>/<vehicle>" either way.
    client_id: Annotated[str, Field(pattern=_ID_PATTERN)] = "collector-1"
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    username: str | None = None
    # Never printed: repr, logs and errors show '**********'.
    password: SecretStr | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=65535)] = 30
    # How long the broker keeps the session (and queues messages) after a disconnect.
    session_expiry_s: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = 86_400
    # MQTT 5 Receive Maximum: unacknowledged deliveries the broker may have in flight to us.
    # Because we acknowledge only after the commit, this is the ingest queue's real bound.
    receive_maximum: Annotated[int, Field(ge=1, le=65535)] = 256
    # Messages validated and stored concurrently (PUBACKs still go out in arrival order).
    # Overlaps decoding with the store's I/O; PostgreSQL runs the transactions in parallel.
    ingest_concurrency: Annotated[int, Field(ge=1, le=1024)] = 16
    # On a clean stop, end the session at the broker (DISCONNECT with session expiry 0):
    # with several collectors in the group, a stopped member's persistent session would
    # otherwise keep receiving its share of the messages, undelivered until it returns
    # or the session expires (docs/scale-out.md). Unacknowledged messages of the session
    # then reach the agents' end-to-end resend instead. false keeps the session, for one
    # collector alone, whose restart then finds the messages queued meanwhile.
    leave_group_on_stop: bool = True
    reconnect_min_s: Annotated[float, Field(gt=0, le=60)] = 0.2
    reconnect_max_s: Annotated[float, Field(gt=0, le=600)] = 10.0

    @model_validator(mode="after")
    def _tls_pair(self) -> MqttConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        return self


DEFAULT_SQLITE: Final = Path("var") / "collector.sqlite3"


class StoreConfig(_Section):
    # "sqlite:////abs/path.db" or "postgresql://user@host:port/db". Omitted: a SQLite file
    # ./var/collector.sqlite3 under the working directory (see ``resolved_url``).
    url: Annotated[str, Field(min_length=1)] | None = None
    # How long a missing seq may hold its epoch's acks back before the collector
    # acknowledges past it. Omitted (the default): until it arrives, because agents send an
    # eviction notice under every evicted seq; a number only for agents that do not.
    ack_gap_grace_s: Annotated[int, Field(ge=1)] | None = None

    def resolved_url(self, cwd: Path) -> str:
        return self.url if self.url is not None else f"sqlite:///{cwd / DEFAULT_SQLITE}"

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # The URL's password never shows in a repr (or anything built from one).
        for name, value in super().__repr_args__():
            yield name, masked_url(value) if name == "url" and isinstance(value, str) else value


# The dashboard's and the API's Content-Security-Policy: no inline script or style, no
# framing; blob: workers and data:/blob: images for the map library. A tile server the
# dashboard is pointed at (docs/dashboard.md) needs its origin added to img-src (and to
# connect-src for vector tiles).
DEFAULT_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:;"
    " worker-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none';"
    " base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class HttpConfig(_Section):
    listen: Annotated[str, Field(pattern=_HOST_PORT)] = "127.0.0.1:8080"
    # Largest page of /v1/events (and of every other paged route) a client may ask for.
    max_limit: Annotated[int, Field(ge=1, le=100_000)] = 10_000
    # HTTPS from the collector itself: a PEM certificate (chain) and its private key, both
    # or neither (docs/deployment.md has the reverse-proxy alternative).
    tls_cert: Annotated[str, Field(min_length=1)] | None = None
    tls_key: Annotated[str, Field(min_length=1)] | None = None
    # A second listener serving only /metrics (e.g. "127.0.0.1:9108"); omitted: /metrics
    # is served on `listen` like every other route.
    metrics_listen: Annotated[str, Field(pattern=_HOST_PORT)] | None = None
    # Requests per second (sustained) and burst per client: its token's name once
    # authenticated, else its address. Beyond: 429 with Retry-After. The burst holds the
    # dashboard's map: a whole-city screen is ~60 tiles (3 layers), fetched at once.
    rate_per_s: Annotated[float, Field(gt=0, le=1_000_000)] = 50.0
    rate_burst: Annotated[int, Field(ge=1, le=1_000_000)] = 300
    # Requests in progress at once, per client and over all clients; beyond: 429 with
    # Retry-After (no queue: a query load never builds up in the collector). Per client:
    # a browser opens up to 6 connections to one host, plus a tab's own polls.
    max_concurrent: Annotated[int, Field(ge=1, le=10_000)] = 16
    max_concurrent_per_client: Annotated[int, Field(ge=1, le=10_000)] = 8
    # Request body bytes (413 beyond) and query string bytes (414 beyond).
    max_body_bytes: Annotated[int, Field(ge=0, le=64 * 1024 * 1024)] = 65_536
    max_query_bytes: Annotated[int, Field(ge=64, le=1_048_576)] = 4_096
    # A store query running longer than this is cancelled (a 503); ingest is not affected.
    query_timeout_s: Annotated[float, Field(gt=0, le=3_600)] = 15.0
    content_security_policy: Annotated[str, Field(min_length=1)] = DEFAULT_CSP
    # Reverse proxies (addresses or CIDRs) whose X-Forwarded-For is believed: a request
    # from one counts against the right-most address of that header that is not itself a
    # trusted proxy (docs/deployment.md). Empty (the default): the peer address, always.
    trusted_proxies: Annotated[list[str], Field(max_length=1_000)] = []
    # The API in processes of its own beside ingest (they share the listening socket and
    # are restarted when they die); 0: in the ingest process (embedded, tests). The limits
    # above count per API process.
    processes: Annotated[int, Field(ge=0, le=16)] = 1
    # Added to the API processes' scheduling niceness, so the kernel runs ingest first.
    nice: Annotated[int, Field(ge=0, le=19)] = 10

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, entries: list[str]) -> list[str]:
        networks(entries)
        return entries

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("http.tls_cert and http.tls_key go together")
        if self.max_concurrent_per_client > self.max_concurrent:
            raise ValueError("http.max_concurrent_per_client must not exceed http.max_concurrent")
        return self

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])


class LogConfig(_Section):
    level: Annotated[str, Field(pattern=r"^(?i:debug|info|warning|error)$")] = "info"


class AlertsConfig(_Section):
    """Thresholds of the vehicle health alerts (see ``cloud_collector.alerts``)."""

    # Offline (status "offline", e.g. the will message) for longer than this.
    offline_after_min: Annotated[int, Field(ge=1, le=10_080)] = 10
    # The agent's oldest pending outbox record older than this (health outbox_oldest_age_ms).
    backlog_age_min: Annotated[int, Field(ge=1, le=100_000)] = 30
    # |health clock_offset_ms| above this.
    clock_offset_ms: Annotated[int, Field(ge=1, le=86_400_000)] = 2_000
    # Payload bytes a vehicle may send per calendar month (UTC).
    data_plan_bytes_per_month: Annotated[int, Field(ge=1, le=2**53)] = 500_000_000
    # The month's bytes are extrapolated to its end only after this many hours of it
    # (the first hours of a month say little); bytes already over the plan always alert.
    data_plan_min_elapsed_h: Annotated[int, Field(ge=0, le=720)] = 24
    # A vehicle clock seen ahead of the collector's (beyond [intake] clock_skew_ms) keeps
    # its alert this long after the last such message.
    clock_ahead_hold_min: Annotated[int, Field(ge=1, le=100_000)] = 60
    # Two epochs of one vehicle both receiving new batches within this window, with
    # overlapping receive spans and record times overlapping by more than
    # live_epochs_overlap_s: two agents (two outbox files) run as one vehicle.
    live_epochs_window_min: Annotated[int, Field(ge=1, le=100_000)] = 10
    # After an unclean stop the agent's new epoch also sends the records not yet in a
    # batch, up to its longest lane batch age (health_max_age_ms, 30 s by default) older
    # than the old epoch's last: an overlap up to this is a restart, not two agents.
    live_epochs_overlap_s: Annotated[int, Field(ge=0, le=86_400)] = 60


class IntakeConfig(_Section):
    """What one sender (the vehicle id of the topic: the broker's ACL pins a certificate to
    it) may cost the collector, and how far its clock may run ahead of the collector's."""

    # Messages per second (sustained) and burst a sender may have processed; beyond that
    # they are counted and dropped before any database work. A dropped batch is not
    # acknowledged end to end, so an honest agent sends it again later.
    sender_rate_per_s: Annotated[float, Field(gt=0, le=1_000_000)] = 200.0
    sender_burst: Annotated[int, Field(ge=1, le=10_000_000)] = 2_000
    # Rejected payloads per second and burst a sender may have written to quarantine;
    # beyond that they are counted and dropped (junk costs no database work).
    junk_rate_per_s: Annotated[float, Field(gt=0, le=1_000_000)] = 2.0
    junk_burst: Annotated[int, Field(ge=1, le=10_000_000)] = 100
    # A vehicle time more than this past the collector's receive time is a clock running
    # ahead: flagged, and never allowed to move the vehicle's presence or latest health.
    clock_skew_ms: Annotated[int, Field(ge=0, le=86_400_000)] = 10_000


class QuarantineConfig(_Section):
    """What quarantine keeps: storage a sender controls, so bounded per payload and per
    sender and UTC day (the full size and SHA-256 are always kept)."""

    # Bytes kept of a payload without a readable identity (garbage, oversized, foreign).
    keep_bytes: Annotated[int, Field(ge=0, le=16 * 1024 * 1024)] = 4_096
    # Bytes kept of a batch whose identity was readable (acknowledged end to end, so this
    # is the only copy left; the protocol caps such a payload at 1 MiB).
    keep_identified_bytes: Annotated[int, Field(ge=0, le=16 * 1024 * 1024)] = 1_048_576
    # Payloads, and bytes kept, per sender per UTC day; beyond either only counts are kept.
    max_per_sender_day: Annotated[int, Field(ge=0, le=10_000_000)] = 1_000
    max_bytes_per_sender_day: Annotated[int, Field(ge=0, le=2**40)] = 64 * 1024 * 1024
    # Clear a quarantined RETAINED message at the broker (an empty retained publish to its
    # topic), so it is not delivered again at every subscribe. Needs the broker's ACL to
    # let collectors write status topics; without it the broker drops the clear, and an
    # already-quarantined retained payload is still recognised by its hash and not stored.
    clear_retained: bool = True


_DAYS = Annotated[int, Field(ge=0, le=36_500)]


class RetentionConfig(_Section):
    """How long each kind of record is kept, in days (0: for ever), enforced by a job in
    the collector (``cloud_collector.retention_job``). Road aggregates (cell-hours, the
    sign inventory) are the product and are always kept."""

    # Raw signal samples and GNSS fixes: location traces, the most personal data held.
    samples_days: _DAYS = 30
    gnss_days: _DAYS = 30
    # Events, and the evidence frames linked to them (they go with their event).
    events_days: _DAYS = 365
    # Health snapshots: an operator looks back days, not months (the latest per vehicle
    # is kept apart and never expires).
    health_days: _DAYS = 30
    # Rejected payloads kept for an operator; longer than the rest, because an acknowledged
    # batch of a newer schema waits there for an upgrade that can read it.
    quarantine_days: _DAYS = 90
    # Which vehicles contributed to each cell-hour (``road_cell_vehicles``, counted for the
    # city's k-anonymity): needed only while late batches for the cell-hour may arrive; a
    # batch later than this adds its events to the cell-hour but not its vehicle (the
    # count may fall short, never over). ``road_cells.vehicles`` keeps the count.
    cell_vehicles_days: _DAYS = 7
    # How often the job runs (it also runs at start).
    interval_s: Annotated[int, Field(ge=1, le=86_400)] = 3_600
    # SQLite: rows per delete transaction, so that ingest (one writer at a time) is never
    # held up long. PostgreSQL deletes never block inserts and need no batches.
    batch_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 5_000

    def keep_days(self) -> dict[str, int]:
        """Setting name (``store.retention.EXPIRING``) -> days."""
        return {
            "samples": self.samples_days,
            "gnss": self.gnss_days,
            "events": self.events_days,
            "health": self.health_days,
            "quarantine": self.quarantine_days,
            "cell_vehicles": self.cell_vehicles_days,
        }

    def contributions_ms(self) -> int | None:
        """How long the vehicles of a cell-hour are kept, ms (None: for ever)."""
        return self.cell_vehicles_days * DAY_MS or None


_TILE_URL: Final = re.compile(r"(https?://|/)\S+")


class DashboardConfig(_Section):
    """The operator dashboard's map (``GET /dashboard/config.json`` hands it to the page)."""

    # A raster tile server drawn under the collector's layers: an http(s) URL template (or
    # a path on this host) with {z}, {x} and {y}. None (the default): the streets the fleet
    # itself drove (the ``roads`` vector tiles) are the basemap, so the map works offline.
    basemap_tiles: Annotated[str, Field(max_length=2048)] | None = None
    # Shown in the map's corner; most tile servers' terms require one.
    basemap_attribution: Annotated[str, Field(max_length=500)] = ""
    # The deepest zoom the tile server has (the map zooms further by enlarging it).
    basemap_max_zoom: Annotated[int, Field(ge=0, le=24)] = 19

    def basemap_origin(self) -> str | None:
        """The tile server's origin when it is on another host (for the page's CSP)."""
        if self.basemap_tiles is None or self.basemap_tiles.startswith("/"):
            return None
        scheme, _, rest = self.basemap_tiles.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"

    @field_validator("basemap_tiles")
    @classmethod
    def _template(cls, url: str | None) -> str | None:
        if url is not None and not _TILE_URL.fullmatch(url):
            raise ValueError("not an http(s) URL template or a path starting with /")
        missing = [p for p in ("{z}", "{x}", "{y}") if url is not None and p not in url]
        if missing:
            raise ValueError(f"the URL template lacks {', '.join(missing)}")
        return url


class AuthConfig(_Section):
    # The key of the city's per-day vehicle pseudonyms (HMAC-SHA256). Omitted: the
    # collector generates one at first use and keeps it in the store, so pseudonyms stay
    # stable across restarts.
    pseudonym_secret: SecretStr | None = None
    # The city sees a cell-hour (road conditions, events) only when at least this many
    # distinct vehicles contributed to it.
    k_anonymity: Annotated[int, Field(ge=1, le=1_000)] = 3
    # How long a token lookup is cached: a revoked token is refused within this time.
    cache_s: Annotated[float, Field(ge=0, le=300)] = 5.0


class AuditConfig(_Section):
    # JSON lines, one per authenticated request; "-" for standard output. Omitted:
    # audit.jsonl beside the SQLite store file (in the working directory for PostgreSQL).
    path: Annotated[str, Field(min_length=1)] | None = None

    def resolved_path(self, store_url: str, cwd: Path) -> Path | None:
        """The file to append to; None for standard output."""
        if self.path == "-":
            return None
        if self.path is not None:
            return cwd / self.path
        if store_url.startswith("sqlite:///"):
            return Path(store_url[len("sqlite://") :]).parent / "audit.jsonl"
        return cwd / "audit.jsonl"


class CollectorConfig(_Section):
    mqtt: MqttConfig = MqttConfig()
    store: StoreConfig = StoreConfig()
    http: HttpConfig = HttpConfig()
    log: LogConfig = LogConfig()
    alerts: AlertsConfig = AlertsConfig()
    intake: IntakeConfig = IntakeConfig()
    quarantine: QuarantineConfig = QuarantineConfig()
    retention: RetentionConfig = RetentionConfig()
    dashboard: DashboardConfig = DashboardConfig()
    auth: AuthConfig = AuthConfig()
    audit: AuditConfig = AuditConfig()


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = CollectorConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _describe(error: Any) -> str:
    loc: tuple[int | str, ...] = tuple(error["loc"])
    key = _key_path(loc)
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"key '{key}': unknown key{hint}"
    msg = str(error["msg"])
    return f"key '{key}': {msg}" if key else msg


def parse_config(data: dict[str, Any], source: str) -> CollectorConfig:
    """Validate a parsed TOML document; raises ConfigError naming ``source`` and the key."""
    try:
        return CollectorConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{source}: {_describe(first)}") from None


def secret_keys(cfg: CollectorConfig) -> list[str]:
    """The keys of ``cfg`` that hold a secret (a password, a key)."""
    keys = []
    if cfg.mqtt.password is not None:
        keys.append("[mqtt] password")
    if cfg.store.url is not None and url_password(cfg.store.url):
        keys.append("[store] url (its password)")
    return keys


def config_secrets(cfg: CollectorConfig) -> list[str]:
    """The secret values of ``cfg``, for ``secrets.Redactor``."""
    found = []
    if cfg.mqtt.password is not None:
        found.append(cfg.mqtt.password.get_secret_value())
    if cfg.store.url is not None:
        found.append(url_password(cfg.store.url) or "")
    return [s for s in found if s]


def check_private(path: Path, keys: list[str]) -> None:
    """A file holding ``keys`` (secrets) must not be readable by every user."""
    if not keys:
        return
    try:
        problem = readable_by_all(path, ", ".join(keys))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if problem is not None:
        raise ConfigError(problem)


def load_config(path: Path) -> CollectorConfig:
    """Read and validate a TOML file; raises ConfigError naming the file and the key, and
    for a file holding a secret that every user may read."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    cfg = parse_config(data, str(path))
    check_private(path, secret_keys(cfg))
    return cfg
