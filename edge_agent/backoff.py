"""Pure policies for the uplink: reconnect backoff and the catch-up rate limit.

Neither reads a clock nor sleeps: the caller passes ``now`` and a random source, and owns
the waiting, so both are tested without time passing.
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


@dataclass
class TokenBucket:
    """Limits bytes per second with a burst allowance, in the "debt" form.

    ``reserve(n, now)`` takes ``n`` bytes at once and returns how long the caller must wait
    before sending them. A batch larger than the burst is therefore still sent, just later,
    instead of waiting forever for a bucket that can never hold it.
    """

    rate: float  # bytes per second; <= 0 means unlimited
    burst: float  # bytes
    now: float  # the caller's monotonic clock, seconds
    tokens: float = field(init=False)

    def __post_init__(self) -> None:
        if self.burst < 0:
            raise ValueError("burst must be >= 0")
        self.tokens = self.burst

    def _refill(self, now: float) -> None:
        if now > self.now:
            self.tokens = min(self.burst, self.tokens + (now - self.now) * self.rate)
            self.now = now

    def reserve(self, nbytes: int, now: float) -> float:
        """Take ``nbytes``; seconds to wait before sending them (0.0 = send now)."""
        if self.rate <= 0:
            return 0.0
        self._refill(now)
        self.tokens -= nbytes
        return max(0.0, -self.tokens / self.rate)
