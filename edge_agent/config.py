"""Agent configuration: TOML, validated once, frozen.

Every error names the file, the key and what was expected, on one line, because the
person reading it is a technician at a taxi with a laptop.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from daemon_kit.private_files import readable_by_all
from edge_agent.batching import DEFAULT_RESERVE_BYTES
from edge_agent.camera import CAMERA_MODELS, DEFAULT_CAMERA_MODEL, STANDARD, CameraModel
from edge_agent.decode import VEHICLE_DBC, bundled_dbc
from edge_agent.errors import ConfigError
from edge_agent.evidence import EvidenceSettings
from edge_agent.signs import SOUND_TABLES
from edge_agent.thin import SamplePolicy

_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VehicleConfig(_Section):
    id: Annotated[str, Field(pattern=_ID_PATTERN)]
    fleet: Annotated[str, Field(pattern=_ID_PATTERN)]


class BusConfig(_Section):
    name: Annotated[str, Field(pattern=_ID_PATTERN)]
    interface: Annotated[str, Field(min_length=1)]
    channel: Annotated[str, Field(min_length=1)]
    logged_channel: str | None = None
    # "camera" buses default to the camera model's bundled DBCs, "vehicle" buses to the taxi subset.
    role: Literal["camera", "vehicle"] | None = None
    dbc: str | list[str] | None = None
    bitrate: int | None = None

    @field_validator("logged_channel", mode="before")
    @classmethod
    def _channel_number(cls, value: object) -> object:
        # BLF, ASC, CSV and MF4 number their channels; a recording's channel is matched as text.
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise ValueError("a channel number is 0 or more")
            return str(value)
        return value

    @property
    def effective_role(self) -> str:
        return self.role or ("camera" if "camera" in self.name.lower() else "vehicle")

    def dbc_paths(self, base: Path, camera: CameraModel = STANDARD) -> list[Path]:
        if self.dbc is None:
            if self.effective_role == "camera":
                return camera.dbc_paths()
            return [bundled_dbc(VEHICLE_DBC)]
        names = [self.dbc] if isinstance(self.dbc, str) else self.dbc
        return [(base / n) if not Path(n).is_absolute() else Path(n) for n in names]


class GnssConfig(_Section):
    """Exactly one source: ``gpsd`` (live) or ``nmea`` (a track file for replay buses,
    relative to the config file)."""

    gpsd: (
        Annotated[str, Field(pattern=r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$")] | None
    ) = None
    nmea: Annotated[str, Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> GnssConfig:
        if (self.gpsd is None) == (self.nmea is None):
            raise ValueError("set exactly one of 'gnss.gpsd' (live) or 'gnss.nmea' (track file)")
        return self

    def nmea_path(self, base: Path) -> Path | None:
        if self.nmea is None:
            return None
        return Path(self.nmea) if Path(self.nmea).is_absolute() else base / self.nmea


class HealthConfig(_Section):
    # Seconds between health snapshots; state changes add snapshots in between.
    interval_s: Annotated[float, Field(ge=1, le=3600)] = 60.0
    # A bus without a frame for this long counts as silent (a state change).
    bus_silent_after_s: Annotated[float, Field(gt=0, le=600)] = 5.0


class OutboxConfig(_Section):
    path: str = "/var/lib/edge-agent/outbox.sqlite3"
    max_bytes: Annotated[int, Field(ge=1 << 20)] = 256 << 20
    # Free bytes kept on the outbox's filesystem; below it batches are evicted, lowest
    # priority and oldest first. At least 1 MiB: SQLite's WAL needs room to grow.
    reserve_bytes: Annotated[int, Field(ge=1 << 20)] = DEFAULT_RESERVE_BYTES


class MqttConfig(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    username: str | None = None
    # Never printed: repr, logs and errors show '**********'.
    password: SecretStr | None = None
    # Uplink tuning; docs/uplink.md explains the defaults (keep-alive data cost and all).
    keepalive_s: Annotated[int, Field(ge=10, le=65535)] = 120
    session_expiry_s: Annotated[int, Field(ge=0, le=0xFFFFFFFF)] = 86_400
    connect_timeout_s: Annotated[float, Field(gt=0, le=300)] = 15.0
    # Longest wait for a broker PUBACK before the connection is considered dead.
    publish_timeout_s: Annotated[float, Field(gt=0, le=600)] = 20.0
    max_inflight: Annotated[int, Field(ge=1, le=1024)] = 16
    # In flight: only what the link (rate measured from PUBACKs) delivers within this
    # share of publish_timeout_s, so a slow link never times out publishes still moving.
    inflight_budget_share: Annotated[float, Field(gt=0, le=1)] = 0.25
    # A batch PUBACKed but not acknowledged end to end is sent again after this long.
    resend_after_ms: Annotated[int, Field(ge=100)] = 60_000
    # After an outage the backlog drains at this rate (0 = unlimited) so it leaves room
    # on the LTE link; the burst lets fresh batches go out without waiting.
    catchup_rate_bytes_per_s: Annotated[int, Field(ge=0)] = 32_768
    catchup_burst_bytes: Annotated[int, Field(ge=0)] = 65_536
    reconnect_min_s: Annotated[float, Field(gt=0)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0)] = 120.0
    # At shutdown, how long the last publish of what is due may take.
    last_publish_s: Annotated[float, Field(ge=0, le=60)] = 3.0

    @model_validator(mode="after")
    def _reconnect_window(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        return self


class CameraConfig(_Section):
    # Which camera sends on the camera bus: its 0x700 layout and default sound table.
    model: str = DEFAULT_CAMERA_MODEL
    # A named dialect of the 0x700 sound table, or an explicit code -> name table;
    # unset, the model's own table.
    sound_table: str | dict[str, str] | None = None

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in CAMERA_MODELS:
            raise ValueError(f"expected one of {sorted(CAMERA_MODELS)}")
        return value

    @field_validator("sound_table")
    @classmethod
    def _known_table(cls, value: str | dict[str, str] | None) -> str | dict[str, str] | None:
        if value is None:
            return value
        if isinstance(value, str):
            if value not in SOUND_TABLES:
                raise ValueError(f"expected one of {sorted(SOUND_TABLES)} or a table")
        elif not all(re.fullmatch(r"[0-7]", k) for k in value):
            raise ValueError("table keys must be sound codes '0'..'7'")
        return value

    @property
    def camera_model(self) -> CameraModel:
        return CAMERA_MODELS[self.model]

    def table(self) -> dict[int, str]:
        if self.sound_table is None:
            return self.camera_model.sound_table()
        if isinstance(self.sound_table, str):
            return dict(SOUND_TABLES[self.sound_table])
        return {int(k): v for k, v in self.sound_table.items()}


class EventsConfig(_Section):
    harsh_braking_g: Annotated[float, Field(gt=0, le=2)] = 0.3


class EvidenceConfig(_Section):
    """Raw frames kept around each urgent event (edge_agent/evidence.py)."""

    enabled: bool = True
    before_s: Annotated[float, Field(ge=0, le=60)] = 5.0
    after_s: Annotated[float, Field(ge=0, le=60)] = 2.0
    # Memory per bus at most; the ring keeps only the "before" window, which at 89 % of
    # 500 kbit/s takes about 1.2 MB (bench/evidence.py).
    ring_bytes: Annotated[int, Field(ge=64 << 10, le=64 << 20)] = 2 << 20
    # Evidence per UTC day, counted before compression (data plus 16 bytes a frame).
    day_cap_bytes: Annotated[int, Field(ge=0)] = 16 << 20
    max_open: Annotated[int, Field(ge=1, le=64)] = 4

    def settings(self) -> EvidenceSettings:
        return EvidenceSettings(
            enabled=self.enabled,
            before_ms=round(self.before_s * 1000),
            after_ms=round(self.after_s * 1000),
            ring_bytes=self.ring_bytes,
            day_cap_bytes=self.day_cap_bytes,
            max_open=self.max_open,
        )


class SignalConfig(_Section):
    name: Annotated[str, Field(min_length=3)]
    deadband: Annotated[float, Field(ge=0)] = 0.0
    min_interval_ms: Annotated[int, Field(ge=0)] = 0
    max_interval_ms: Annotated[int, Field(gt=0)] | None = None
    unit: str = ""

    def policy(self) -> SamplePolicy:
        return SamplePolicy(
            self.name, self.deadband, self.min_interval_ms, self.max_interval_ms, self.unit
        )


class AgentConfig(_Section):
    vehicle: VehicleConfig
    bus: Annotated[list[BusConfig], Field(min_length=1)]
    gnss: GnssConfig | None = None
    health: HealthConfig = HealthConfig()
    outbox: OutboxConfig = OutboxConfig()
    mqtt: MqttConfig = MqttConfig()
    camera: CameraConfig = CameraConfig()
    events: EventsConfig = EventsConfig()
    evidence: EvidenceConfig = EvidenceConfig()
    # Replaces the default collection profile when given.
    signal: list[SignalConfig] | None = None

    @field_validator("bus")
    @classmethod
    def _unique_bus_names(cls, buses: list[BusConfig]) -> list[BusConfig]:
        names = [b.name for b in buses]
        if len(set(names)) != len(names):
            raise ValueError(f"bus names must be unique, got {names}")
        return buses


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    model: Any = AgentConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = next(
            (
                a
                for a in getattr(field.annotation, "__args__", (field.annotation,))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
        if model is None:
            return []
    return list(model.model_fields)


# Keys whose values an error message must not repeat.
SECRET_KEYS: Final = frozenset({"password"})


def _describe(error: Any) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(error["loc"][-1]), _known_keys(error["loc"]), n=1)
        return f"unknown key (did you mean '{close[0]}'?)" if close else "unknown key"
    if kind == "missing":
        return "required key is missing"
    got = error.get("input")
    secret = error["loc"] and error["loc"][-1] in SECRET_KEYS
    shown = "" if secret or isinstance(got, dict | list) else f" (got {got!r})"
    return f"{msg.removeprefix('Value error, ')}{shown}"


def parse_config(data: dict[str, Any], source: str) -> AgentConfig:
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        # A misspelt key also makes the right one "missing": report the misspelling.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        first = errors[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(
            f"{source}: key '{_key_path(first['loc'])}': {_describe(first)}{more}"
        ) from None


def load_config(path: Path) -> AgentConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    cfg = parse_config(data, str(path))
    if cfg.mqtt.password is not None:
        _check_private(path, "[mqtt] password")
    return cfg


def _check_private(path: Path, what: str) -> None:
    """A config file holding a secret must not be readable by every user."""
    try:
        problem = readable_by_all(path, what)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    if problem is not None:
        raise ConfigError(problem)
