"""Versioned schema migrations, one directory per backend: ``<backend>/NNNN_name.sql``.

Applied in version order at open; each applied version is recorded in
``schema_migrations`` so reopening applies nothing twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from cloud_collector.errors import MigrationError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load(backend: str) -> list[Migration]:
    """The migrations of ``backend`` ("sqlite" or "postgres"), ascending by version."""
    found = []
    for entry in resources.files(__package__).joinpath(backend).iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions for {backend}: {versions}")
    return found


def pending(all_migrations: list[Migration], applied: set[int]) -> list[Migration]:
    newest = max((m.version for m in all_migrations), default=0)
    if applied and max(applied) > newest:
        raise MigrationError(
            f"the database schema (version {max(applied)}) is newer than this code ({newest})"
        )
    return [m for m in all_migrations if m.version not in applied]
