"""Fixtures shared by the tests: a real mosquitto, a real PostgreSQL server (one per session;
tests create their own databases in it) and a SQLite store in the test's temporary directory.
A test module defining its own fixture of the same name uses that one."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cloud_collector.store import Store, open_store
from harness.mosquitto import MosquittoHarness
from harness.postgres import PgHarness
from tests.support.examples import load_profile

# Before any test module is imported: their example counts scale with the profile.
load_profile(os.environ)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoHarness]:
    with MosquittoHarness(tmp_path, persistence=True) as b:
        yield b


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    yield s
    await s.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgHarness]:
    with PgHarness() as pg:
        yield pg
