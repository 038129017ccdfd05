"""The store's access side: API tokens (by hash only), the audit log, and the collector's
generated secrets. Backend-neutral SQL over ``engine.Tx``, run through the store's runner
like the other sides (``EngineAccess``)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from cloud_collector.errors import QueryError, StoreError
from cloud_collector.roles import Role
from cloud_collector.store.engine import Row, Tx, fetchrow
from cloud_collector.store.reads import decode_cursor, encode_cursor

if TYPE_CHECKING:
    from cloud_collector.store.shared import Runner

MAX_AUDIT_LIMIT: Final = 10_000
# collector_secrets.name of the generated pseudonym key (when the config has none).
PSEUDONYM_SECRET: Final = "pseudonym_secret"


class DuplicateTokenError(StoreError):
    """A token of that name exists already."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenRecord:
    """A stored token (never the token itself: ``token_hash`` is its SHA-256, hex)."""

    name: str
    token_hash: str
    role: Role
    fleets: tuple[str, ...]
    created_ms: int
    expires_ms: int | None
    revoked_ms: int | None

    def usable(self, now_ms: int) -> bool:
        """Neither revoked nor expired at ``now_ms``."""
        return self.revoked_ms is None and (self.expires_ms is None or now_ms < self.expires_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    time_ms: int
    token: str
    role: str
    method: str
    route: str  # the route template (``/v1/vehicles/{vehicle_id}``), never the raw URL
    status: int
    rows: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditQuery:
    since_ms: int | None = None  # inclusive
    until_ms: int | None = None  # exclusive
    limit: int = 100
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[AuditEntry]
    next_cursor: str | None


class Access(Protocol):
    """Tokens, audit log and generated secrets; each method is one transaction."""

    async def add_token(self, token: TokenRecord) -> None: ...

    async def tokens(self) -> list[TokenRecord]: ...

    async def token_by_hash(self, token_hash: str) -> TokenRecord | None: ...

    async def revoke_token(self, name: str, now_ms: int) -> bool:
        """True when ``name`` existed and was not revoked before."""
        ...

    async def add_audit(self, entries: Sequence[AuditEntry]) -> None: ...

    async def audit(self, q: AuditQuery) -> AuditPage: ...

    async def secret(self, name: str) -> str:
        """The stored secret ``name``, generated (and kept) at the first call."""
        ...


_TOKEN_COLUMNS = "name, token_hash, role, fleets, created_ms, expires_ms, revoked_ms"


def _token(r: Row) -> TokenRecord:
    return TokenRecord(
        name=r[0], token_hash=r[1], role=Role(r[2]), fleets=tuple(json.loads(r[3])),
        created_ms=int(r[4]), expires_ms=None if r[5] is None else int(r[5]),
        revoked_ms=None if r[6] is None else int(r[6]),
    )  # fmt: skip


async def _add_token(tx: Tx, t: TokenRecord) -> None:
    inserted = await tx.fetch(
        f"INSERT INTO api_tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING RETURNING name",
        t.name, t.token_hash, t.role.value, json.dumps(list(t.fleets)), t.created_ms,
        t.expires_ms, t.revoked_ms,
    )  # fmt: skip
    if not inserted:
        raise DuplicateTokenError(f"name: a token named {t.name!r} exists already")


async def _audit(tx: Tx, q: AuditQuery) -> AuditPage:
    if not 1 <= q.limit <= MAX_AUDIT_LIMIT:
        raise QueryError(f"limit must be in [1, {MAX_AUDIT_LIMIT}], not {q.limit}")
    where = ["1 = 1"]
    args: list[object] = []
    if q.since_ms is not None:
        where.append("time_ms >= ?")
        args.append(q.since_ms)
    if q.until_ms is not None:
        where.append("time_ms < ?")
        args.append(q.until_ms)
    if q.cursor is not None:
        after_time, after_id = decode_cursor(q.cursor)
        where.append("(time_ms > ? OR (time_ms = ? AND id > ?))")
        args += [after_time, after_time, after_id]
    rows = await tx.fetch(
        "SELECT id, time_ms, token, role, method, route, status, rows FROM audit_log"
        f" WHERE {' AND '.join(where)} ORDER BY time_ms, id LIMIT ?",
        *args, q.limit + 1,
    )  # fmt: skip
    entries = [
        AuditEntry(
            time_ms=int(r[1]), token=r[2], role=r[3], method=r[4], route=r[5],
            status=int(r[6]), rows=None if r[7] is None else int(r[7]),
        )
        for r in rows[: q.limit]
    ]  # fmt: skip
    more = len(rows) > q.limit
    last = rows[q.limit - 1] if more else None
    return AuditPage(entries, None if last is None else encode_cursor(int(last[1]), int(last[0])))


async def _secret(tx: Tx, name: str) -> str:
    await tx.execute(
        "INSERT INTO collector_secrets (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
        name, secrets.token_urlsafe(32),
    )  # fmt: skip
    row = await fetchrow(tx, "SELECT value FROM collector_secrets WHERE name = ?", name)
    assert row is not None
    return str(row[0])


class EngineAccess:
    """``Access`` over ``runner``."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def add_token(self, token: TokenRecord) -> None:
        await self._runner.run(lambda tx: _add_token(tx, token))

    async def tokens(self) -> list[TokenRecord]:
        async def work(tx: Tx) -> list[TokenRecord]:
            rows = await tx.fetch(f"SELECT {_TOKEN_COLUMNS} FROM api_tokens ORDER BY name")
            return [_token(r) for r in rows]

        return await self._runner.run(work)

    async def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        async def work(tx: Tx) -> TokenRecord | None:
            row = await fetchrow(
                tx, f"SELECT {_TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?", token_hash
            )
            return None if row is None else _token(row)

        return await self._runner.run(work)

    async def revoke_token(self, name: str, now_ms: int) -> bool:
        async def work(tx: Tx) -> bool:
            rows = await tx.fetch(
                "UPDATE api_tokens SET revoked_ms = ? WHERE name = ? AND revoked_ms IS NULL"
                " RETURNING name",
                now_ms, name,
            )  # fmt: skip
            return bool(rows)

        return await self._runner.run(work)

    async def add_audit(self, entries: Sequence[AuditEntry]) -> None:
        rows = [(e.time_ms, e.token, e.role, e.method, e.route, e.status, e.rows) for e in entries]
        if not rows:
            return

        async def work(tx: Tx) -> None:
            await tx.executemany(
                "INSERT INTO audit_log (time_ms, token, role, method, route, status, rows)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

        await self._runner.run(work)

    async def audit(self, q: AuditQuery) -> AuditPage:
        return await self._runner.run(lambda tx: _audit(tx, q))

    async def secret(self, name: str) -> str:
        return await self._runner.run(lambda tx: _secret(tx, name))
