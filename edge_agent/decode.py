"""Frame decoding: DBC messages compiled once into an id -> decoder lookup.

The decoder asks cantools for raw integers and applies scale and offset itself, so that
invalid sentinels are recognised exactly on the raw value (a float comparison after
scaling could miss them). A sentinel is any raw value whose DBC value-table name starts
with ``INVALID``; it decodes to ``None``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import cantools

from edge_agent.errors import DbcError

log = logging.getLogger(__name__)

SignalValue = int | float | None
DecodedValues = Mapping[str, SignalValue]
Payload = bytes | bytearray

# Extended ids live in the same lookup as standard ids; this bit keeps 0x700 and 0x00000700 apart.
EXTENDED_KEY_BIT: Final = 1 << 31
INVALID_PREFIX: Final = "INVALID"

BUNDLED_DBC_DIR = "dbc"
MOBILEYE_DBC = "mobileye.dbc"
# The Mobileye 8 Connect's 0x700 only, loaded after MOBILEYE_DBC (edge_agent/camera.py).
MOBILEYE8_DBC = "mobileye8.dbc"
VEHICLE_DBC = "hyundai_taxi.dbc"


def bundled_dbc(name: str) -> Path:
    """Path of a DBC shipped inside this package (``edge_agent/dbc``)."""
    return Path(str(resources.files("edge_agent") / BUNDLED_DBC_DIR / name))


def load_dbc(path: Path) -> Any:
    """Load one DBC file, turning any parser failure into a one-line :class:`DbcError`."""
    try:
        return cantools.database.load_file(str(path), database_format="dbc")
    except FileNotFoundError:
        raise DbcError(f"{path}: DBC file not found") from None
    except OSError as exc:
        raise DbcError(f"{path}: cannot read DBC file: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - cantools raises many unrelated types on bad input
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DbcError(f"{path}: not a valid DBC file: {first_line}") from None


@dataclass(frozen=True, slots=True)
class _SignalScaling:
    name: str
    scale: float
    offset: float
    invalid_raw: frozenset[int]
    keeps_int: bool


@dataclass(slots=True)
class CompiledMessage:
    """One DBC message ready to decode, with the last payload it decoded cached."""

    name: str
    length: int
    _decode_raw: Any
    _signals: tuple[_SignalScaling, ...]
    _last_data: bytes | None = None
    _last_values: DecodedValues = field(default_factory=dict)

    def decode(self, data: Payload) -> DecodedValues:
        """Decode ``data``; a short frame yields only the signals its bytes cover.

        The camera repeats most payloads burst after burst, so the last result is reused
        when the bytes are unchanged. Callers must treat the returned mapping as read-only.
        """
        if data == self._last_data:
            return self._last_values
        raw: dict[str, int] = self._decode_raw(
            data, decode_choices=False, scaling=False, allow_truncated=True
        )
        values: dict[str, SignalValue] = {}
        for sig in self._signals:
            r = raw.get(sig.name)
            if r is None:
                continue
            if r in sig.invalid_raw:
                values[sig.name] = None
            elif sig.keeps_int:
                values[sig.name] = r
            else:
                values[sig.name] = r * sig.scale + sig.offset
        self._last_data = bytes(data)
        self._last_values = values
        return values


def _compile_message(message: Any) -> CompiledMessage:
    signals = []
    for sig in message.signals:
        invalid = frozenset(
            int(raw)
            for raw, label in (sig.choices or {}).items()
            if str(label).upper().startswith(INVALID_PREFIX)
        )
        scale, offset = sig.scale, sig.offset
        keeps_int = scale == 1 and offset == 0 and not sig.is_float
        signals.append(_SignalScaling(sig.name, scale, offset, invalid, keeps_int))
    return CompiledMessage(
        name=message.name,
        length=message.length,
        _decode_raw=message.decode,
        _signals=tuple(signals),
    )


@dataclass
class FrameDecoder:
    """Decodes the frames of one bus; unknown ids cost one dict miss."""

    messages: dict[int, CompiledMessage]

    @classmethod
    def from_databases(cls, databases: Iterable[Any]) -> FrameDecoder:
        """A later database's message replaces an earlier one's of the same id: a camera
        model layers its own 0x700 over the base Mobileye DBC this way."""
        messages: dict[int, CompiledMessage] = {}
        for db in databases:
            for message in db.messages:
                key = message.frame_id | (EXTENDED_KEY_BIT if message.is_extended_frame else 0)
                messages[key] = _compile_message(message)
        return cls(messages)

    @classmethod
    def from_paths(cls, paths: Iterable[Path]) -> FrameDecoder:
        return cls.from_databases(load_dbc(p) for p in paths)

    @property
    def can_ids(self) -> list[tuple[int, bool]]:
        """(id, extended) pairs, for kernel-side receive filters."""
        return [(k & ~EXTENDED_KEY_BIT, bool(k & EXTENDED_KEY_BIT)) for k in self.messages]

    def lookup(self, can_id: int, extended: bool) -> CompiledMessage | None:
        return self.messages.get(can_id | EXTENDED_KEY_BIT if extended else can_id)
