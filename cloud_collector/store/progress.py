"""What a store's transactions are doing, for the service's systemd watchdog.

The watchdog must see ingest stop moving, not only the event loop turning: a store whose
every transaction fails, or whose transaction hangs, keeps the process alive but
acknowledges nothing. Each backend counts its transactions here; ``WatchProgress`` turns
the counts into the one growing number ``daemon_kit.sdnotify.WatchdogGate`` expects.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from cloud_collector.errors import StoreError

T = TypeVar("T")


@dataclass(slots=True)
class TxStats:
    """``pending``: transactions started (or waiting for their turn) and not ended.
    ``failing``: the last transaction that ended failed on the store's side (a
    ``StoreError``; a caller's bad query or a cancellation does not count)."""

    pending: int = 0
    committed: int = 0
    failures: int = 0
    failing: bool = False

    def committed_one(self) -> None:
        self.committed += 1
        self.failing = False

    def failed_one(self) -> None:
        self.failures += 1
        self.failing = True


@runtime_checkable
class Transacting(Protocol):
    """A store that counts its transactions."""

    tx_stats: TxStats


class WatchProgress:
    """Committed transactions plus a heartbeat on every turn where the store is idle and
    healthy (nothing pending, last outcome not a failure). So the value stands still
    while a transaction hangs, and while every transaction fails; an idle collector
    with a working store keeps advancing."""

    def __init__(self) -> None:
        self.heartbeats = 0

    def progress(self, stats: TxStats) -> int:
        if stats.pending == 0 and not stats.failing:
            self.heartbeats += 1
        return stats.committed + self.heartbeats


async def counted(stats: TxStats, transaction: Awaitable[T]) -> T:
    """Await one transaction of a backend, counting it in ``stats``."""
    stats.pending += 1
    try:
        result = await transaction
    except StoreError:
        stats.failed_one()
        raise
    finally:
        stats.pending -= 1
    stats.committed_one()
    return result
