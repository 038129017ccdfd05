"""Fixtures shared by the collector's integration tests: a real mosquitto and a SQLite
store in the test's temporary directory. A test module defining its own fixture of the
same name uses that one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cloud_collector.store import Store, open_store
from tests.mosquitto_harness import MosquittoHarness


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoHarness]:
    with MosquittoHarness(tmp_path, persistence=True) as b:
        yield b


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    yield s
    await s.close()
