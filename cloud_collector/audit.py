"""The audit log of authenticated requests: one JSON line per request on its own stream
(a file, or standard output), and the same entries in the store's ``audit_log`` table
for ``GET /v1/audit``.

The line is written when the request ends; the store gets the entries in batches (at
most ``FLUSH_EVERY`` entries or ``FLUSH_AFTER_S`` old, one transaction each), so auditing
does not add a store write to every request. ``flush`` writes what is pending now (the
audit route calls it first, so it sees the requests before it)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Final, TextIO

from cloud_collector.errors import StoreError
from cloud_collector.store.access import Access, AuditEntry

log = logging.getLogger(__name__)

FLUSH_EVERY: Final = 200
FLUSH_AFTER_S: Final = 1.0
# Entries kept for the store while it is unreachable; the oldest go first beyond this
# (the JSON lines still have them).
MAX_PENDING: Final = 100_000


def entry_json(e: AuditEntry) -> str:
    return json.dumps(asdict(e), separators=(",", ":"))


class AuditTrail:
    """``path``: the JSON-lines file to append to (None: standard output, False: none)."""

    def __init__(
        self,
        access: Access,
        path: Path | bool | None = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._access = access
        self._monotonic = monotonic
        self._pending: list[AuditEntry] = []
        self._first_pending = 0.0
        self._flushing: asyncio.Task[None] | None = None
        self._stream: TextIO | None = None
        self._owned = False
        if path is None:
            self._stream = sys.stdout
        elif isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = path.open("a", encoding="utf-8", buffering=1)
            self._owned = True

    def record(self, entry: AuditEntry) -> None:
        if self._stream is not None:
            self._stream.write(entry_json(entry) + "\n")
        if not self._pending:
            self._first_pending = self._monotonic()
        self._pending.append(entry)
        if len(self._pending) > MAX_PENDING:
            del self._pending[: len(self._pending) - MAX_PENDING]
        due = (
            len(self._pending) >= FLUSH_EVERY
            or self._monotonic() - self._first_pending >= FLUSH_AFTER_S
        )
        if due and (self._flushing is None or self._flushing.done()):
            self._flushing = asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        """Write the pending entries to the store; on a store failure they stay pending."""
        batch, self._pending = self._pending, []
        try:
            await self._access.add_audit(batch)
        except StoreError as exc:
            log.warning("audit: %d entries not stored yet: %s", len(batch), exc)
            self._pending[:0] = batch

    async def close(self) -> None:
        if self._flushing is not None:
            await self._flushing
        await self.flush()
        if self._owned and self._stream is not None:
            self._stream.close()
            self._stream = None
