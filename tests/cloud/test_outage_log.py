"""A database outage in the collector's log: one warning per condition, rate-limited with
counts, never asyncio's "Task exception was never retrieved" traceback at ERROR."""

from __future__ import annotations

import asyncio
import gc
import logging

import asyncpg
import pytest

from cloud_collector.service import OUTAGE_LOG_S, OutageLog, quiet_outages


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def _refused() -> None:
    raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")


async def test_unretrieved_connection_errors_are_one_warning_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    clock = Clock()
    try:
        quiet_outages(loop, OutageLog(clock))
        with caplog.at_level(logging.INFO):
            for _ in range(5):
                task = loop.create_task(_refused())
                await asyncio.sleep(0)
                del task  # never awaited: asyncio reports it when the task is collected
                gc.collect()
            clock.t += OUTAGE_LOG_S
            task = loop.create_task(_refused())
            await asyncio.sleep(0)
            del task
            gc.collect()
    finally:
        loop.set_exception_handler(before)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 2, lines
    assert lines[0].startswith("database connection lost in a background task: Connection")
    assert "(4 more like it in the last minute)" in lines[1]


async def test_other_unretrieved_exceptions_still_reach_asyncio(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    try:
        quiet_outages(loop, OutageLog(Clock()))
        with caplog.at_level(logging.INFO):

            async def bug() -> None:
                raise ValueError("a bug")

            task = loop.create_task(bug())
            await asyncio.sleep(0)
            del task
            gc.collect()
    finally:
        loop.set_exception_handler(before)
    assert any("never retrieved" in r.getMessage() for r in caplog.records)


def test_pool_warnings_lose_their_traceback_and_repeat_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    pool_log = logging.getLogger("asyncpg.pool")
    loop = asyncio.new_event_loop()
    outages = quiet_outages(loop, OutageLog(clock))
    try:
        with caplog.at_level(logging.WARNING, logger="asyncpg.pool"):
            for step in range(4):
                try:
                    raise asyncpg.CannotConnectNowError("the database system is shutting down")
                except asyncpg.CannotConnectNowError:
                    pool_log.warning(
                        "Failed to restore the pool connection floor; retrying", exc_info=True
                    )
                clock.t += OUTAGE_LOG_S / 2 if step < 2 else 0
    finally:
        pool_log.removeFilter(outages)
        loop.close()
    records = [r for r in caplog.records if r.name == "asyncpg.pool"]
    assert [r.exc_info for r in records] == [None, None]
    assert records[0].getMessage() == (
        "Failed to restore the pool connection floor; retrying: CannotConnectNowError: "
        "the database system is shutting down"
    )
    assert records[1].getMessage().endswith("(1 more like it in the last minute)")
