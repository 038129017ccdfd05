"""Fixtures of the collector's tests: a store URL on each backend (SQLite in the test's
temporary directory, a fresh database in the session's PostgreSQL) and a store opened on
it. A test module asking for ``store_url`` runs once per backend."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloud_collector.store import Store, open_store
from harness.postgres import PgHarness

_db_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'store.db'}"
    pg: PgHarness = request.getfixturevalue("pg_server")
    return pg.create_database(f"t{next(_db_names)}")


@pytest.fixture
async def store_on_each_backend(store_url: str) -> AsyncIterator[Store]:
    s = await open_store(store_url)
    try:
        yield s
    finally:
        await s.close()
