"""Speed and deceleration by source, and the harsh-braking rule built on them.

Pure: every call takes ``now_ms``, the time of the frame that carried the sample.

Two sources with different shapes need different handling:

- wheel speeds (WHL_SPD11, 50 Hz, 0.03 km/h steps): fine-grained, a least-squares slope
  over one second is enough;
- the camera's echo of the car's speed (0x760): whole km/h, refreshed only every 0.4-0.5 s
  and held in between, and now and then 0 for 0.5-2 s before coming back at the speed it had.
  An end-point difference over half a second on that staircase reads a 0.2 g stop as 0.34 g,
  so its slope is taken over a longer window, and a fall to 0 in one step from a speed an
  ordinary stop never skips is a dropout whose zeros never reach the estimator.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

STANDARD_GRAVITY: Final = 9.80665
KMH_TO_MPS: Final = 1 / 3.6

WHEELS: Final = "wheels"
CAMERA: Final = "camera"

# Least-squares windows per source. The camera's holds leave about three distinct values in
# 1.5 s, which is what the slope needs to stay within a few hundredths of a g of the truth.
WHEEL_WINDOW_MS: Final = 1_000
CAMERA_WINDOW_MS: Final = 1_500
# A slope over less than this share of the window is not trusted (start, gaps).
MIN_SPAN_SHARE: Final = 0.8
# Times are rebased this often so the running sums stay small and exact enough.
REBASE_MS: Final = 60_000

# An ordinary stop (0.25 g) loses at most ~4.5 km/h between two camera refreshes (0.5 s), so
# its readings reach 0 from below this; a fall to 0 from this or more is a dropout. A harsh
# stop that does skip it has shown its deceleration in the steps before.
DROPOUT_FROM_KMH: Final = 6.0
# Zero for longer than this is no dropout: it is taken as the truth, and the window restarts
# so the fall itself gives no deceleration. Real dropouts last 0.5-2 s.
MAX_DROPOUT_MS: Final = 2_500

# A harsh-braking episode is reported once it ends, or after this long at the latest.
MAX_EPISODE_MS: Final = 3_000


class SlopeWindow:
    """Least-squares slope of speed against time over a sliding window, O(1) per sample."""

    __slots__ = ("_origin", "_samples", "_st", "_stt", "_stv", "_sv", "window_ms")

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._samples: deque[tuple[int, float]] = deque()
        self._origin = 0
        self._st = self._stt = 0  # integers: exact
        self._sv = self._stv = 0.0

    def clear(self) -> None:
        self._samples.clear()
        self._st = self._stt = 0
        self._sv = self._stv = 0.0

    def add(self, now_ms: int, kmh: float) -> None:
        samples = self._samples
        if not samples or now_ms - self._origin > REBASE_MS:
            self._rebase(now_ms)
        samples.append((now_ms, kmh))
        self._count(now_ms, kmh, 1)
        while now_ms - samples[0][0] > self.window_ms:
            t, v = samples.popleft()
            self._count(t, v, -1)

    def _count(self, t_ms: int, kmh: float, sign: int) -> None:
        t = t_ms - self._origin
        self._st += sign * t
        self._stt += sign * t * t
        self._sv += sign * kmh
        self._stv += sign * t * kmh

    def _rebase(self, now_ms: int) -> None:
        kept = list(self._samples)
        self.clear()
        self._origin = kept[0][0] if kept else now_ms
        for t, v in kept:
            self._samples.append((t, v))
            self._count(t, v, 1)

    def samples(self) -> list[list[float]]:
        """The window's samples as plain data, for a checkpoint."""
        return [[t, v] for t, v in self._samples]

    def restore(self, samples: list[list[float]]) -> None:
        self.clear()
        for t, v in samples:
            self.add(int(t), float(v))

    def span_ms(self) -> int:
        samples = self._samples
        return samples[-1][0] - samples[0][0] if samples else 0

    def decel_mps2(self) -> float | None:
        """Deceleration in m/s² (positive = slowing), or None while the window is too short."""
        n = len(self._samples)
        if n < 3 or self.span_ms() < self.window_ms * MIN_SPAN_SHARE:
            return None
        denominator = n * self._stt - self._st * self._st
        if denominator <= 0:
            return None
        slope = (n * self._stv - self._st * self._sv) / denominator  # km/h per ms
        return -slope * KMH_TO_MPS * 1000


class WheelSpeed:
    """Mean of the wheel speeds and its deceleration."""

    source = WHEELS

    def __init__(self, window_ms: int = WHEEL_WINDOW_MS) -> None:
        self.window = SlopeWindow(window_ms)
        self.kmh: float | None = None
        self.seen_ms: int | None = None

    def update(self, now_ms: int, kmh: float) -> None:
        self.kmh, self.seen_ms = kmh, now_ms
        self.window.add(now_ms, kmh)

    def fresh(self, now_ms: int, max_age_ms: int) -> bool:
        return self.seen_ms is not None and now_ms - self.seen_ms <= max_age_ms

    def state(self) -> dict[str, Any]:
        return {"kmh": self.kmh, "seen_ms": self.seen_ms, "samples": self.window.samples()}

    def restore(self, state: dict[str, Any]) -> None:
        self.kmh, self.seen_ms = state["kmh"], state["seen_ms"]
        self.window.restore(state["samples"])


class CameraSpeed:
    """The camera's speed echo with its dropouts taken out, and its deceleration."""

    source = CAMERA

    def __init__(self, window_ms: int = CAMERA_WINDOW_MS) -> None:
        self.window = SlopeWindow(window_ms)
        self.kmh: float | None = None  # last accepted reading (held through a dropout)
        self._dropout_ms: int | None = None
        self.dropouts = 0

    def state(self) -> dict[str, Any]:
        return {
            "kmh": self.kmh,
            "dropout_ms": self._dropout_ms,
            "dropouts": self.dropouts,
            "samples": self.window.samples(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.kmh, self._dropout_ms = state["kmh"], state["dropout_ms"]
        self.dropouts = int(state["dropouts"])
        self.window.restore(state["samples"])

    def update(self, now_ms: int, kmh: float) -> None:
        if kmh == 0 and self._is_dropout(now_ms):
            return
        self._dropout_ms = None
        self.kmh = kmh
        self.window.add(now_ms, kmh)

    def _is_dropout(self, now_ms: int) -> bool:
        if self._dropout_ms is None:
            if self.kmh is None or self.kmh < DROPOUT_FROM_KMH:
                return False
            self._dropout_ms = now_ms
            self.dropouts += 1
            return True
        if now_ms - self._dropout_ms <= MAX_DROPOUT_MS:
            return True
        self.window.clear()
        return False


@dataclass(frozen=True, slots=True)
class Braking:
    """One harsh-braking episode, reported once it is over."""

    start_ms: int  # centre of the window whose slope first crossed the threshold
    decel_mps2: float  # the slope that crossed it
    peak_mps2: float  # the largest slope during the episode
    source: str
    window_ms: int


def vars_of(episode: _Episode) -> dict[str, Any]:
    return dataclasses.asdict(episode)


@dataclass(slots=True)
class _Episode:
    start_ms: int
    began_ms: int
    decel: float
    peak: float
    source: str
    window_ms: int

    def result(self) -> Braking:
        return Braking(self.start_ms, self.decel, self.peak, self.source, self.window_ms)


class HarshBraking:
    """Harsh braking: the deceleration crosses the threshold; one event per episode.

    The episode starts when the slope reaches the threshold and ends when it falls below it
    again (or after ``MAX_EPISODE_MS``); it is reported then, with its peak. Another episode
    may start only after the slope has fallen below half the threshold.
    """

    def __init__(self, threshold_g: float) -> None:
        self.threshold = threshold_g * STANDARD_GRAVITY
        self._armed = True
        self._episode: _Episode | None = None

    def state(self) -> dict[str, Any]:
        episode = self._episode
        return {"armed": self._armed, "episode": None if episode is None else vars_of(episode)}

    def restore(self, state: dict[str, Any]) -> None:
        self._armed = bool(state["armed"])
        episode = state["episode"]
        self._episode = None if episode is None else _Episode(**episode)

    @property
    def open(self) -> bool:
        """True while an episode is under way (started, not yet reported)."""
        return self._episode is not None

    def update(
        self, now_ms: int, decel: float | None, source: str, window: SlopeWindow
    ) -> Braking | None:
        episode = self._episode
        if episode is not None:
            if decel is not None:
                episode.peak = max(episode.peak, decel)
            over = decel is None or decel < self.threshold or source != episode.source
            if over or now_ms - episode.began_ms >= MAX_EPISODE_MS:
                self._episode = None
                return episode.result()
            return None
        if decel is None:
            return None
        if self._armed and decel >= self.threshold:
            self._armed = False
            start = now_ms - window.span_ms() // 2
            self._episode = _Episode(start, now_ms, decel, decel, source, window.window_ms)
        elif decel < self.threshold / 2:
            self._armed = True
        return None
