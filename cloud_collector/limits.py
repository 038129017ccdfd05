"""What one HTTP client may cost the collector: a pure core (``now`` is an argument).

A client is its token's name once authenticated, else its address. Each has a token
bucket of requests (``intake.SenderBudgets``, the same bucket MQTT senders have) and a
number of requests in progress at once; all clients together have a ceiling of requests
in progress. A request beyond any of them is refused at once with how long to wait
(a 429 with ``Retry-After``), never queued: a query load cannot build up in the
collector and hold up ingest or /readyz behind it.

The overall slot and the client's slot are taken in two steps (``enter``, then
``admit_client``) because the HTTP side takes them at two points: the overall one before
authentication (who the client is is not known yet, and a refusal must cost next to
nothing), the client's once its token is known (``admission``). ``admit`` takes both at
once.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from cloud_collector.intake import SenderBudgets

# Why a request was refused (the ``reason`` of a refusal, a label of its counter).
RATE: Final = "rate"
CLIENT_BUSY: Final = "client_concurrency"
SERVER_BUSY: Final = "concurrency"


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``[http] trusted_proxies`` entries (addresses or CIDRs) as networks; a ValueError
    naming the first that is neither."""
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR") from None
    return tuple(out)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return mapped or ip


def client_address(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """Whose request it is: ``peer`` (the TCP peer's address), unless it is a trusted
    proxy; then the right-most address of the ``X-Forwarded-For`` values that is not a
    trusted proxy (each proxy appends the address it was connected from, so everything
    left of that is what the client claims). A chain of trusted proxies only, or an entry
    that is no address (a proxy's ``unknown``), stops at the last trusted hop: the client
    can never pick its own identity, and so never a fresh rate budget."""
    hop = _address(peer)
    if hop is None or not _trusted(hop, trusted):
        return str(hop) if hop is not None else peer
    entries = [e for value in forwarded_for for e in value.split(",") if e.strip()]
    for entry in reversed(entries):
        ip = _address(entry)
        if ip is None:
            break
        hop = ip
        if not _trusted(ip, trusted):
            break
    return str(hop)


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Sequence[Network]) -> bool:
    return any(ip.version == n.version and ip in n for n in trusted)


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    retry_after_s: int


_SERVER_BUSY: Final = Refusal(SERVER_BUSY, 1)
_CLIENT_BUSY: Final = Refusal(CLIENT_BUSY, 1)


class ApiLimits:
    """Admission of HTTP requests: ``enter`` / ``admit_client`` (or ``admit``, both) take
    a slot or return a ``Refusal``; ``leave`` / ``release_client`` (``release``) give it
    back once the response is done. ``in_progress``: requests holding an overall slot."""

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int,
        max_concurrent: int,
        max_concurrent_per_client: int,
    ) -> None:
        if max_concurrent < 1 or max_concurrent_per_client < 1:
            raise ValueError("max_concurrent and max_concurrent_per_client must be >= 1")
        self._budgets = SenderBudgets(rate_per_s, burst)
        self.max_concurrent = max_concurrent
        self.max_concurrent_per_client = max_concurrent_per_client
        self._busy: Counter[str] = Counter()
        self.in_progress = 0
        self.refused: Counter[str] = Counter()

    def enter(self) -> Refusal | None:
        """Take one of the overall slots; a ``Refusal`` (nothing taken) when all are busy."""
        if self.in_progress >= self.max_concurrent:
            self.refused[SERVER_BUSY] += 1
            return _SERVER_BUSY
        self.in_progress += 1
        return None

    def leave(self) -> None:
        """Give back an overall slot ``enter`` took."""
        if self.in_progress <= 0:
            raise ValueError("leave without a slot")
        self.in_progress -= 1

    def admit_client(self, client: str, now_s: float) -> Refusal | None:
        """Take one slot of ``client`` at ``now_s`` (monotonic seconds), after ``enter``;
        a ``Refusal`` (nothing taken) when over its concurrency or its rate."""
        refusal: Refusal | None = None
        if self._busy[client] >= self.max_concurrent_per_client:
            refusal = _CLIENT_BUSY
        elif not self._budgets.take(client, now_s):
            wait = self._budgets.wait_s(client, now_s)
            refusal = Refusal(RATE, max(1, math.ceil(wait)))
        if refusal is not None:
            self.refused[refusal.reason] += 1
            return refusal
        self._busy[client] += 1
        return None

    def release_client(self, client: str) -> None:
        """Give back a slot ``admit_client`` took for ``client``."""
        if self._busy[client] <= 0:
            raise ValueError(f"release of {client!r} without a slot")
        self._busy[client] -= 1
        if not self._busy[client]:
            del self._busy[client]

    def admit(self, client: str, now_s: float) -> Refusal | None:
        """Both slots at once (``enter`` and ``admit_client``): a ``Refusal`` (nothing
        taken) when over the overall concurrency, the client's, or its rate."""
        refusal = self.enter()
        if refusal is None:
            refusal = self.admit_client(client, now_s)
            if refusal is not None:
                self.leave()
        return refusal

    def release(self, client: str) -> None:
        """Give back both slots ``admit`` took for ``client``."""
        self.release_client(client)
        self.leave()
