"""Ground truth: the scripted events, stamped with the time of the first frame showing them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Marks of these kinds only add details to another event with the same key.
_DETAIL_KINDS = {"tsr_detection": "detection", "wipers_switch": "switch"}
# Attributes a decoder is expected to report with the event too (at its start); everything
# else about the event is scenario ground truth.
DECODER_ATTRS = {
    "fcw": ("urban",),
    "tsr_sign": ("sign_type", "limit_kmh"),
    "overspeed": ("limit_kmh", "level"),
    "headway_warning": ("level",),
}


@dataclass(slots=True)
class _Instance:
    kind: str
    start_us: int
    end_us: int
    source: str
    attrs: dict[str, Any] = field(default_factory=dict)


class EventRecorder:
    """Collects one instance per scripted event; every frame showing it extends it."""

    def __init__(self, start_us: int) -> None:
        self.start_us = start_us
        self._instances: dict[tuple[str, tuple[int, str]], _Instance] = {}
        self._details: dict[tuple[int, str], dict[str, Any]] = {}

    def mark(
        self, kind: str, key: tuple[int, str], ts_us: int, source: str, attrs: dict[str, Any]
    ) -> None:
        detail = _DETAIL_KINDS.get(kind)
        if detail is not None:
            known = self._details.setdefault(key, {})
            t_key = f"{detail}_t_s"
            if t_key not in known or self._rel(ts_us) < known[t_key]:
                known.update({f"{detail}_frame": source, t_key: self._rel(ts_us)})
            return
        inst = self._instances.get((kind, key))
        if inst is None:
            self._instances[(kind, key)] = _Instance(kind, ts_us, ts_us, source, dict(attrs))
            return
        if ts_us < inst.start_us:  # the two buses are generated independently
            inst.start_us, inst.source = ts_us, source
        inst.end_us = max(inst.end_us, ts_us)
        a = inst.attrs
        for name in ("level", "speed_kmh"):
            if name in attrs:
                a[f"max_{name}"] = max(a.get(f"max_{name}", a[name]), attrs[name])
        if "headway_s" in attrs:
            a["min_headway_s"] = min(a.get("min_headway_s", a["headway_s"]), attrs["headway_s"])

    def _rel(self, ts_us: int) -> float:
        return round((ts_us - self.start_us) / 1e6, 6)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for (_, key), inst in self._instances.items():
            truth = dict(inst.attrs)
            truth.update(self._details.get(key, {}))
            attrs = {k: truth.pop(k) for k in DECODER_ATTRS.get(inst.kind, ()) if k in truth}
            out.append(
                {
                    "type": inst.kind,
                    "time": iso_utc(inst.start_us),
                    "end": iso_utc(inst.end_us),
                    "t_s": self._rel(inst.start_us),
                    "end_t_s": self._rel(inst.end_us),
                    "cycle": key[0],
                    "source": inst.source,
                    "attrs": attrs,
                    "truth": truth,
                }
            )
        out.sort(key=lambda e: (e["t_s"], e["type"]))
        return out


def iso_utc(ts_us: int) -> str:
    """ISO 8601 UTC with milliseconds (truncated), e.g. ``2026-03-02T07:30:19.012Z``."""
    dt = datetime.fromtimestamp(ts_us // 1_000_000, tz=UTC)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{(ts_us % 1_000_000) // 1000:03d}Z"
