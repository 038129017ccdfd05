"""Pure policies for the uplink: the catch-up rate limit, and the publish window and
timeouts fitted to the link's measured rate (the reconnect backoff is daemon_kit's).

None reads a clock or sleeps: the caller passes ``now`` and a random source, and owns
the waiting, so all are tested without time passing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


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


# The shortest busy time counted for one PUBACK: acks that arrive together must not make
# the rate look infinite.
_MIN_BUSY_S = 0.001


@dataclass
class LinkRate:
    """What the uplink can deliver, measured from PUBACKs, and the publish policy it implies.

    The rate is bytes acknowledged per second of *busy* link time: a PUBACK accounts for
    its batch's bytes over the time since the later of its own publish and the previous
    PUBACK (so idle gaps between rounds do not count). Bytes and busy time are kept as
    exponentially decayed sums, which follows a link that gets slower or faster within a
    few batches and weighs a big batch more than a small one.

    From the rate follow:

    * ``window(sizes)``: how many of the next batches to put in flight: as many as the
      link delivers within ``budget_share`` of the base publish timeout (at least one, at
      most ``max_inflight``). Until the first PUBACK measured the link, one batch.
    * ``timeout_s(bytes_ahead)``: a publish's PUBACK timeout: the base timeout plus the
      time the link needs for the bytes queued ahead of the PUBACK (the batch's own
      included), so a publish that is still moving on a slow link is not declared dead.
    """

    base_timeout_s: float
    max_inflight: int
    budget_share: float = 0.25
    decay: float = 0.8  # weight of the past per PUBACK: about the last five batches count
    _bytes: float = field(default=0.0, init=False)
    _busy_s: float = field(default=0.0, init=False)
    _last_ack: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.base_timeout_s <= 0 or self.max_inflight < 1:
            raise ValueError("link rate needs base_timeout_s > 0 and max_inflight >= 1")
        if not 0 < self.budget_share <= 1 or not 0 <= self.decay < 1:
            raise ValueError("link rate needs 0 < budget_share <= 1 and 0 <= decay < 1")

    def rate(self) -> float | None:
        """Bytes per second the link delivered lately; None before the first PUBACK."""
        return self._bytes / self._busy_s if self._busy_s > 0 else None

    def on_puback(self, nbytes: int, sent_at: float, now: float) -> None:
        """A publish of ``nbytes`` started at ``sent_at`` got its PUBACK at ``now``."""
        start = sent_at if self._last_ack is None else max(sent_at, self._last_ack)
        self._bytes = self._bytes * self.decay + nbytes
        self._busy_s = self._busy_s * self.decay + max(now - start, _MIN_BUSY_S)
        self._last_ack = now if self._last_ack is None else max(self._last_ack, now)

    def on_timeout(self, bytes_ahead: int, waited_s: float) -> None:
        """A PUBACK did not come within ``waited_s`` with ``bytes_ahead`` queued before it.

        The link delivered less than ``bytes_ahead`` in that time, so its rate is below
        ``bytes_ahead / waited_s``: the estimate drops to half of that bound at most.
        """
        if waited_s <= 0:
            return
        bound = bytes_ahead / waited_s / 2
        rate = self.rate()
        if rate is None or rate > bound:
            self._busy_s = max(self._busy_s, waited_s)
            self._bytes = bound * self._busy_s

    def budget_bytes(self) -> float | None:
        """Bytes to keep in flight; None before the link was measured."""
        rate = self.rate()
        return None if rate is None else rate * self.budget_share * self.base_timeout_s

    def resend_after_ms(self, base_ms: int, unpublished_bytes: int) -> int:
        """How long a published batch waits for its end-to-end ack before it is sent
        again: ``base_ms`` plus the time the link needs for the batches not yet
        published. The collector acknowledges the highest *contiguous* seq, so an urgent
        batch that overtook a backlog is acknowledged only once the backlog has arrived;
        resending it every ``base_ms`` meanwhile would spend the metered link on
        duplicates. Once the backlog is out, a batch the broker lost is resent after
        ``base_ms`` again."""
        rate = self.rate()
        if rate is None or rate <= 0:
            return base_ms
        return base_ms + round(1000 * unpublished_bytes / rate)

    def window(self, sizes: Sequence[int]) -> int:
        """How many of the batches of ``sizes`` (in publish order) to publish now."""
        if not sizes:
            return 0
        budget = self.budget_bytes()
        if budget is None:
            return 1
        count, total = 0, 0
        for size in sizes[: self.max_inflight]:
            if count and total + size > budget:
                break
            count += 1
            total += size
        return count

    def _transfer_s(self, nbytes: int) -> float:
        rate = self.rate()
        return 0.0 if rate is None else nbytes / rate

    def timeout_s(self, bytes_ahead: int) -> float:
        """The PUBACK timeout of a publish with ``bytes_ahead`` queued before its PUBACK."""
        return self.base_timeout_s + self._transfer_s(bytes_ahead)
