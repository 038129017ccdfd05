"""What both backends share: a transaction runner, and the store built on it.

A backend supplies a ``Runner`` (open a transaction, run the work, translate its driver's
errors into ``StoreError``, count the transaction for the watchdog); the ledger
(``ledger.EngineLedger``) and the query side (``queries.EngineQueries``) run their engine
functions through it, and ``SplitStore`` joins the two into one ``base.Store``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from cloud_collector.store.access import Access, EngineAccess
from cloud_collector.store.base import Ledger, Queries
from cloud_collector.store.engine import Tx
from cloud_collector.store.progress import TxStats

T = TypeVar("T")


class Runner(Protocol):
    """One backend's connection discipline: every call of ``run`` is one transaction,
    rolled back on any failure or cancellation."""

    tx_stats: TxStats

    async def run(self, work: Callable[[Tx], Awaitable[T]]) -> T: ...

    async def close(self) -> None: ...


R = TypeVar("R", bound=Runner)


class SplitStore(Generic[R]):
    """``base.Store`` as its two sides: ``ledger`` (what ingest writes) and ``queries``
    (what the API reads), closed together with the ``runner`` they were opened on.

    Each side's methods are also this object's own, so one object serves ingest and the
    API; a different query engine is a different ``queries`` here, the ledger unchanged.
    """

    def __init__(
        self, runner: R, ledger: Ledger, queries: Queries, *, query_runner: Runner | None = None
    ) -> None:
        self.runner = runner
        # The query side's own connection(s), when it has them: closed with the store.
        self.query_runner = query_runner
        # The ledger's committed count at the last ping (see ``ping``).
        self._pinged_at = runner.tx_stats.committed
        self.ledger = ledger
        self.queries = queries
        self.ingest = ledger.ingest
        self.quarantine = ledger.quarantine
        self.quarantine_batch = ledger.quarantine_batch
        self.set_presence = ledger.set_presence
        self.note_clock_ahead = ledger.note_clock_ahead
        self.events = queries.events
        self.event_evidence = queries.event_evidence
        self.road_conditions = queries.road_conditions
        self.tile_cells = queries.tile_cells
        self.tile_events = queries.tile_events
        self.tile_roads = queries.tile_roads
        self.extent = queries.extent
        self.signs = queries.signs
        self.vehicles = queries.vehicles
        self.vehicle = queries.vehicle
        self.vehicle_health = queries.vehicle_health
        self.health_history = queries.health_history
        self.metrics = queries.metrics
        self.cell_page = queries.cell_page
        self.sign_page = queries.sign_page
        self.count_features = queries.count_features
        self.extents = queries.extents
        # Tokens, audit log and generated secrets, on the same runner.
        self.access: Access = EngineAccess(runner)

    @property
    def tx_stats(self) -> TxStats:
        """The runner's transaction counts (``progress.Transacting``, for the watchdog)."""
        return self.runner.tx_stats

    async def ping(self) -> None:
        """The store reachable. A transaction of the ledger committed since the last
        ping proves it already (no waiting behind ingest's queue of writes); otherwise
        one round trip on the ledger's side. The query side's connections may be busy
        with long queries (up to their timeout): a readiness probe must not wait behind
        them, and a query that fails answers its own request with a 503."""
        stats = self.runner.tx_stats
        if stats.committed != self._pinged_at and not stats.failing:
            self._pinged_at = stats.committed
            return
        await self.ledger.ping()
        self._pinged_at = stats.committed

    async def close(self) -> None:
        if self.query_runner is not None:
            await self.query_runner.close()
        await self.runner.close()
