"""Per-sender budgets of the collector's intake: a pure core (``now`` is an argument).

The broker delivers one queue of messages to the collector, in arrival order; a sender
that floods it would make every other vehicle's batches wait behind its own, each costing
a database transaction. A token bucket per sender (the topic's vehicle id, which the
broker's ACL pins to one certificate) lets the collector count and drop what a sender
sends beyond its budget before any database work, so the queue drains at decoding speed
and honest senders keep their share.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

# Senders whose buckets are remembered; the least recently seen is forgotten first (it
# starts again with a full bucket, which costs at most one burst).
MAX_SENDERS: Final = 100_000

# Causes of drops before any database work (``IngestMetrics.dropped``).
DROP_SENDER_BUDGET: Final = "sender_budget"
DROP_JUNK_BUDGET: Final = "junk_budget"


class SenderBudgets:
    """A token bucket per sender: ``rate_per_s`` sustained, ``burst`` at once."""

    def __init__(self, rate_per_s: float, burst: int, max_senders: int = MAX_SENDERS) -> None:
        if rate_per_s <= 0 or burst < 1 or max_senders < 1:
            raise ValueError("rate_per_s > 0, burst >= 1 and max_senders >= 1 are required")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_senders = max_senders
        # sender -> (tokens, time of the last refill, s)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, sender: str, now_s: float) -> bool:
        """Spend one token of ``sender`` at ``now_s`` (monotonic seconds); False when
        its bucket is empty."""
        tokens, last = self._buckets.get(sender, (float(self.burst), now_s))
        # max(): a clock that stood still or a caller's earlier ``now`` never refills.
        tokens = min(float(self.burst), tokens + max(now_s - last, 0.0) * self.rate_per_s)
        granted = tokens >= 1.0
        if granted:
            tokens -= 1.0
        self._buckets[sender] = (tokens, max(now_s, last))
        self._buckets.move_to_end(sender)
        while len(self._buckets) > self.max_senders:
            self._buckets.popitem(last=False)
        return granted

    def wait_s(self, sender: str, now_s: float) -> float:
        """Seconds from ``now_s`` until ``sender`` has a whole token again (0: now)."""
        tokens, last = self._buckets.get(sender, (float(self.burst), now_s))
        tokens = min(float(self.burst), tokens + max(now_s - last, 0.0) * self.rate_per_s)
        return max(1.0 - tokens, 0.0) / self.rate_per_s

    def __len__(self) -> int:
        return len(self._buckets)
