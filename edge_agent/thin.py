"""Signal thinning: keep a sample only when it says something new.

A sample is kept when the value moved beyond its deadband (or became or stopped being
invalid), and no sooner than ``min_interval_ms`` after the last kept one; an unchanged
value is repeated every ``max_interval_ms`` so a consumer can tell "steady" from "silent".
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.decode import DecodedValues, SignalValue
from protocol.records import SignalSeries


@dataclass(frozen=True, slots=True)
class SamplePolicy:
    """How one signal is thinned. ``signal`` is ``"<Message>.<signal>"`` or a derived name."""

    signal: str
    deadband: float = 0.0
    min_interval_ms: int = 0
    max_interval_ms: int | None = None
    unit: str = ""

    @property
    def message(self) -> str:
        return self.signal.partition(".")[0]

    @property
    def field(self) -> str:
        return self.signal.partition(".")[2]


class _Track:
    __slots__ = ("last_ms", "last_value", "policy", "times", "values")

    def __init__(self, policy: SamplePolicy) -> None:
        self.policy = policy
        self.last_ms: int | None = None
        self.last_value: SignalValue = None
        self.times: list[int] = []
        self.values: list[SignalValue] = []

    def offer(self, value: SignalValue, now_ms: int) -> None:
        last_ms = self.last_ms
        if last_ms is not None:
            policy = self.policy
            elapsed = now_ms - last_ms
            if elapsed < policy.min_interval_ms:
                return
            last = self.last_value
            if value is None or last is None:
                changed = value is not last
            else:
                changed = abs(value - last) > policy.deadband
            if not changed and (policy.max_interval_ms is None or elapsed < policy.max_interval_ms):
                return
        self.last_ms = now_ms
        self.last_value = value
        self.times.append(now_ms)
        self.values.append(value)


class Thinner:
    """Applies sample policies to decoded messages; ``drain`` hands over what was kept."""

    def __init__(self, policies: list[SamplePolicy]) -> None:
        self._tracks = {p.signal: _Track(p) for p in policies}
        self._by_message: dict[str, list[tuple[str, _Track]]] = {}
        for p in policies:
            self._by_message.setdefault(p.message, []).append((p.field, self._tracks[p.signal]))

    def feed(self, message: str, values: DecodedValues, now_ms: int) -> None:
        tracks = self._by_message.get(message)
        if tracks is None:
            return
        for field_name, track in tracks:
            if field_name in values:
                track.offer(values[field_name], now_ms)

    def offer(self, signal: str, value: SignalValue, now_ms: int) -> None:
        """Offer a derived signal (e.g. vehicle speed computed from four wheels)."""
        track = self._tracks.get(signal)
        if track is not None:
            track.offer(value, now_ms)

    def pending(self) -> int:
        return sum(len(t.times) for t in self._tracks.values())

    def drain(self) -> list[SignalSeries]:
        out = []
        for name, track in self._tracks.items():
            if track.times:
                out.append(
                    SignalSeries(name, tuple(track.times), tuple(track.values), track.policy.unit)
                )
                track.times = []
                track.values = []
        return out
