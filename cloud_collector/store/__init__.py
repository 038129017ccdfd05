"""The road-condition store: ingest of taxi batches and the queries of the traffic backend.

``open_store(url)`` picks the backend from the URL scheme:

* ``sqlite:///abs/path.db`` - a SQLite file in WAL mode (single collector process);
* ``postgresql://user@host:port/db`` (or ``postgres://``) - an asyncpg pool.

Migrations are applied when the store opens. The interface is ``base.Store``, in two
sides: ``base.Ledger`` (what ingest writes: receipts, acks, quarantine, presence, the
batch itself; ``ledger``/``engine``) and ``base.Queries`` (what the API reads; ``queries``/
``reads``). Both run on one backend runner per store (``shared``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from cloud_collector.errors import StoreError
from cloud_collector.secrets import masked_url
from cloud_collector.store import rollup
from cloud_collector.store.base import (
    BBox,
    CellHour,
    EventPage,
    EventQuery,
    IngestResult,
    Ledger,
    Queries,
    RoadQuery,
    SignCluster,
    Store,
    StoredEvent,
    VehicleStatus,
)
from cloud_collector.store.shared import SplitStore

# A seq gap holds an epoch's acks back until the missing batch arrives: an agent replaces
# every batch it evicts by an eviction notice under the same seq, so a missing seq is still
# on its way (a bulk backlog behind newer urgent batches can take hours on a slow link).
# Acknowledging past it would make the taxi delete batches it has not sent. A finite grace
# (``[store] ack_gap_grace_s``) is for agents that do not send eviction notices.
DEFAULT_GAP_GRACE_MS: Final[int | None] = None
log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_GAP_GRACE_MS",
    "BBox",
    "CellHour",
    "EventPage",
    "EventQuery",
    "IngestResult",
    "Ledger",
    "Queries",
    "RoadQuery",
    "SignCluster",
    "Store",
    "StoredEvent",
    "VehicleStatus",
    "open_store",
]


async def open_store(
    url: str,
    *,
    gap_grace_ms: int | None = DEFAULT_GAP_GRACE_MS,
    query_timeout_s: float | None = None,
    contributions_ms: int | None = None,
    k_anonymity: int | None = None,
) -> Store:
    """Open (and migrate) the store at ``url``; the query side runs on connections of its
    own, each query cancelled after ``query_timeout_s`` (when given). ``contributions_ms``:
    how long the vehicles of a cell-hour are kept (``engine.ingest``). ``k_anonymity``:
    the city's k (``[auth] k_anonymity``), for which the per-day k-anonymous road sums are
    rebuilt now unless they hold it (``rollup``; None: left as they are). Raises
    StoreError for a bad URL or an unreachable or unmigratable database."""
    store = await _open(url, gap_grace_ms, query_timeout_s, contributions_ms)
    if k_anonymity is not None:
        try:
            await _ensure_k(store, k_anonymity)
        except BaseException:
            await store.close()
            raise
    return store


async def _ensure_k(store: SplitStore[Any], k: int) -> None:
    held = await store.runner.run(rollup.recorded_k)
    if held != k:
        # One pass over every stored cell-hour: a while on a large store.
        log.info("rebuilding the per-day road sums of the city's view for k=%d (held: %s)", k, held)
    if await store.runner.run(lambda tx: rollup.ensure_k(tx, k)):
        log.info("per-day road sums of the city's view rebuilt for k=%d", k)


async def _open(
    url: str, gap_grace_ms: int | None, query_timeout_s: float | None, contributions_ms: int | None
) -> SplitStore[Any]:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from cloud_collector.store.sqlite import open_sqlite

        path = url[len("sqlite://") :]
        if not path.startswith("/") or path == "/":
            raise StoreError(
                f"sqlite URL needs an absolute path (sqlite:///abs/path.db): {masked_url(url)}"
            )
        return await open_sqlite(
            Path(path),
            gap_grace_ms=gap_grace_ms,
            query_timeout_s=query_timeout_s,
            contributions_ms=contributions_ms,
        )
    if scheme in ("postgresql", "postgres"):
        from cloud_collector.store.postgres import open_postgres

        return await open_postgres(
            url,
            gap_grace_ms=gap_grace_ms,
            query_timeout_s=query_timeout_s,
            contributions_ms=contributions_ms,
        )
    raise StoreError(
        f"unsupported store URL scheme {scheme!r}: use sqlite:///abs/path.db or postgresql://"
    )
