"""A SQLite connection confined to a thread of its own, for whole transactions.

The outbox runs each write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT`` or
``ROLLBACK``) as one synchronous function on this thread: one hand-off from the event loop
and one back per transaction. Through aiosqlite every statement, every fetch and every
cursor close is a hand-off of its own (a commit of a second's records took about eight),
and the only way to run a whole function on an aiosqlite connection's thread is a private
method (``Connection._execute``), which a minor release may change. So the thread is an
executor of one worker reached through ``loop.run_in_executor`` (public and stable), and
the connection is opened on it and used nowhere else: sqlite3's ``check_same_thread``
stays on and would catch any use from another thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from edge_agent.errors import OutboxError

_R = TypeVar("_R")

THREAD_NAME = "outbox-sqlite"


def _connect(path: Path, setup: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit, as the caller's BEGIN IMMEDIATE.
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        setup(connection)
    except BaseException:
        connection.close()
        raise
    return connection


class SqliteThread:
    """One sqlite3 connection and the one thread that uses it."""

    def __init__(self, executor: ThreadPoolExecutor, connection: sqlite3.Connection) -> None:
        self._executor = executor
        self._connection: sqlite3.Connection | None = connection

    @classmethod
    async def open(cls, path: Path, setup: Callable[[sqlite3.Connection], None]) -> SqliteThread:
        """Connect to ``path`` on a new thread and run ``setup`` (pragmas) there. Raises
        what sqlite3 raises; the thread is gone then."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_NAME)
        try:
            connection = await asyncio.get_running_loop().run_in_executor(
                executor, _connect, path, setup
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, connection)

    async def run(self, work: Callable[[sqlite3.Connection], _R]) -> _R:
        """``work(connection)`` on the thread; its result or exception comes back here.

        Cancelling the caller does not stop ``work`` once it has started: it runs to its
        end (a transaction commits or rolls back whole), only its result is not awaited.
        """
        connection = self._connection
        if connection is None:
            raise OutboxError("the outbox's SQLite connection is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, connection)

    async def close(self) -> None:
        """Close the connection on its thread and let the thread end. Closing twice is
        harmless."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, connection.close)
        finally:
            # The close above was the last work: the worker ends once it is done.
            self._executor.shutdown(wait=False)
