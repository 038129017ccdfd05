"""SQL straight to a test store's database (SQLite file or PostgreSQL), past the store:
to seed rows ingest would write differently, or to read what the store keeps."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import asyncpg

SQLITE: str = "sqlite://"


async def execute(store_url: str, statements: Sequence[str]) -> None:
    """Run ``statements`` (each may hold several, on SQLite) in order."""
    if store_url.startswith(SQLITE):
        with sqlite3.connect(store_url[len(SQLITE) :]) as db:
            for sql in statements:
                db.executescript(sql)
        return
    con = await asyncpg.connect(store_url)
    try:
        for sql in statements:
            await con.execute(sql)
    finally:
        await con.close()


async def fetch(store_url: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of the query ``sql``."""
    if store_url.startswith(SQLITE):
        with sqlite3.connect(store_url[len(SQLITE) :]) as db:
            return [tuple(r) for r in db.execute(sql)]
    con = await asyncpg.connect(store_url)
    try:
        return [tuple(r) for r in await con.fetch(sql)]
    finally:
        await con.close()
