"""The one place in-process tests build an HTTP client for the collector's app: a header
every request needs (a bearer token) goes into ``HEADERS`` here."""

from __future__ import annotations

from typing import Final

import httpx
from fastapi import FastAPI

HEADERS: Final[dict[str, str]] = {}


def api_client(app: FastAPI, *, client: tuple[str, int] = ("127.0.0.1", 123)) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` talking to ``app`` in-process, from the address ``client``."""
    transport = httpx.ASGITransport(app=app, client=client)
    return httpx.AsyncClient(transport=transport, base_url="http://t", headers=HEADERS)
