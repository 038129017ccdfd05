"""API tokens for tests: mint one straight into a store, and the headers that carry it.

Every in-process API test gets its client from ``api_client`` (or its headers from
``bearer``), so the way a request authenticates is set in this one place."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from cloud_collector.roles import Role
from cloud_collector.store.access import Access, TokenRecord
from cloud_collector.tokens_cli import create_token


async def mint(
    access: Access,
    role: Role = Role.ADMIN,
    *,
    fleets: tuple[str, ...] = (),
    name: str | None = None,
    expires_ms: int | None = None,
    created_ms: int = 0,
) -> str:
    """A new token of ``role`` in ``access``; the token."""
    record = TokenRecord(
        name=name or f"test-{role.value}-{secrets.token_hex(4)}", token_hash="", role=role,
        fleets=fleets, created_ms=created_ms, expires_ms=expires_ms, revoked_ms=None,
    )  # fmt: skip
    return await create_token(access, record)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def api_client(
    app: FastAPI, access: Access, role: Role = Role.ADMIN, *, fleets: tuple[str, ...] = ()
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of ``app`` (in process) carrying a new token of ``role``."""
    from tests.support.api_client import api_client as client_of

    headers = bearer(await mint(access, role, fleets=fleets))
    async with client_of(app, headers=headers) as c:
        yield c
