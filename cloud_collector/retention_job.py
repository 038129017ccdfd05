"""The retention job: at start and every ``[retention] interval_s``, make the time
partitions ahead of now and remove what is older than each table's setting.

The decisions are ``store.retention``'s (pure); the store's adapter
(``store.maintenance``) carries them out in short transactions: whole partitions are
dropped where the store is partitioned (the rows before the cut in the partition that
straddles it are deleted), and rows are deleted ``batch_rows`` at a time on SQLite, so
ingest is never held up for long. Each table's deletes stop after ``MAX_BATCHES`` per
run; the next run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cloud_collector.config import RetentionConfig
from cloud_collector.errors import StoreError
from cloud_collector.metrics import IngestMetrics
from cloud_collector.store.maintenance import StoreMaintenance
from cloud_collector.store.retention import cutoffs, plan
from daemon_kit.clock import wall_ms

log = logging.getLogger(__name__)

# Delete batches per table and run: bounds one run's time; the rest waits for the next.
MAX_BATCHES: Final = 2_000


@dataclass(frozen=True, slots=True)
class RunSummary:
    created: int
    dropped: int
    deleted: int


class RetentionJob:
    def __init__(
        self,
        cfg: RetentionConfig,
        maintenance: StoreMaintenance,
        metrics: IngestMetrics,
        *,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.cfg = cfg
        self.maintenance = maintenance
        self.metrics = metrics
        self.clock_ms = clock_ms

    async def run_once(self) -> RunSummary:
        """One run at the clock's now; raises ``StoreError`` if the store fails."""
        now = self.clock_ms()
        keep = self.cfg.keep_days()
        m = self.maintenance
        created = await m.ensure_partitions(now, cutoffs(now, keep))
        for name in created:
            self.metrics.partitions_created[name.rsplit("_p", 1)[0]] += 1
        todo = plan(now, keep, await m.partitions())
        for partition in todo.drop:
            await m.drop(partition)
            self.metrics.partitions_dropped[partition.parent] += 1
        deleted = 0
        for delete in todo.delete:
            for _ in range(MAX_BATCHES):
                n = await m.delete_batch(delete, self.cfg.batch_rows)
                deleted += n
                self.metrics.retention_deleted[delete.table] += n
                if n < self.cfg.batch_rows:
                    break
        self.metrics.retention_last_run_ms = now
        summary = RunSummary(len(created), len(todo.drop), deleted)
        if summary.created or summary.dropped or summary.deleted:
            log.info(
                "retention: %d partitions created, %d dropped, %d rows deleted",
                summary.created, summary.dropped, summary.deleted,
            )  # fmt: skip
        return summary

    async def run(self, stop: asyncio.Event) -> None:
        """Run at once, then every ``interval_s``, until ``stop``. A failed run (database
        down) is logged and counted; the next one tries again."""
        while not stop.is_set():
            try:
                await self.run_once()
            except StoreError as exc:
                self.metrics.retention_failures += 1
                log.warning("retention run failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.cfg.interval_s)
