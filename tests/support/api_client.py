"""The one place in-process tests build an HTTP client for the collector's app. Every
request carries a bearer token: an admin token minted into the app's store at the first
request, unless the caller passes ``headers`` of its own (another role, or none)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx
from fastapi import FastAPI

from cloud_collector.roles import Role
from tests.support.auth import bearer, mint


class _AdminToken(httpx.Auth):
    """Mints an admin token into ``app``'s store (``app.state.access``) at the first
    request: the fixture that builds the client need not be async or know the store."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.headers: dict[str, str] | None = None

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.headers is None:
            self.headers = bearer(await mint(self.app.state.access, Role.ADMIN))
        if "Authorization" not in request.headers:
            request.headers.update(self.headers)
        yield request


def api_client(
    app: FastAPI,
    *,
    client: tuple[str, int] = ("127.0.0.1", 123),
    headers: dict[str, str] | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` talking to ``app`` in-process, from the address ``client``,
    as an admin (or with ``headers``, e.g. another role's bearer token, or ``{}``: none)."""
    transport = httpx.ASGITransport(app=app, client=client)
    auth = _AdminToken(app) if headers is None else None
    return httpx.AsyncClient(
        transport=transport, base_url="http://t", headers=headers or {}, auth=auth
    )
