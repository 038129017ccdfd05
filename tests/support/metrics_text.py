"""Reading the collector's Prometheus text exposition (``/metrics``, ``metrics.render``)
in tests: each sample's value by name and labels, and whether every line is well formed."""

from __future__ import annotations

import re

# One sample line: a name, optional labels, one value.
SAMPLE_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? \S+$')


def malformed_lines(text: str) -> list[str]:
    """Lines that are neither a ``# `` comment nor a sample line."""
    return [x for x in text.splitlines() if not (x.startswith("# ") or SAMPLE_LINE.match(x))]


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` (as written) -> value, for every sample line."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of ``name`` with exactly these labels (in this order), None if absent."""
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return samples(text).get(f"{name}{{{inner}}}" if inner else name)
