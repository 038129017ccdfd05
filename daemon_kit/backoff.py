"""The reconnect backoff both services use: capped exponential with full jitter.

Pure: the caller passes the random source and owns the waiting, so it is tested without
time passing. The agent's uplink and gpsd client and the collector's broker session all
reconnect on this schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter.

    The n-th consecutive failure waits a uniform random time in ``[0, min(cap, base * 2**n))``.
    Full jitter (rather than "exponential plus a little noise") is what spreads 500 taxis
    leaving one tunnel over the whole window instead of synchronising their retries.
    """

    base_s: float
    cap_s: float
    random01: Callable[[], float]
    failures: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s:
            raise ValueError("backoff needs 0 < base_s <= cap_s")

    def window_s(self) -> float:
        """The upper bound of the next delay."""
        # Cap the exponent too: 2**failures overflows a float after ~1000 failures.
        return min(self.cap_s, self.base_s * 2.0 ** min(self.failures, 60))

    def next_delay_s(self) -> float:
        """The delay before the next attempt; counts one more failure."""
        delay = self.random01() * self.window_s()
        self.failures += 1
        return delay

    def reset(self) -> None:
        """A connection succeeded: the next failure starts from ``base_s`` again."""
        self.failures = 0
