"""The HTTP side's guard rails, around every route of the app.

* ``GuardMiddleware`` (ASGI): a query string over ``[http] max_query_bytes`` is a 414 and
  a body over ``max_body_bytes`` a 413, before any route runs; every response carries the
  security headers (``response_headers``: ``SECURITY_HEADERS`` and the configured
  Content-Security-Policy).
* ``Guard``: one app's limits (``limits.ApiLimits``), applied by the plain ASGI layers of
  ``admission``: the overall concurrency before authentication, the client's rate and
  concurrency after it, a 429 with ``Retry-After`` beyond them. The client is the
  authenticated caller's token name (``request.state.caller``, or ``principal``), else
  its address: the peer's, or behind a trusted proxy (``[http] trusted_proxies``) the one
  ``X-Forwarded-For`` gives (``limits.client_address``). ``/healthz`` and ``/readyz`` are
  never refused: a probe must see the truth under load.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud_collector.config import HttpConfig
from cloud_collector.limits import ApiLimits, Network, client_address, networks

# Routes no limit applies to (probes).
EXEMPT: Final = frozenset({"/healthz", "/readyz"})
# FastAPI's interactive documentation pages load their script from a CDN and inline; they
# keep the other headers but no CSP (it would blank them).
NO_CSP: Final = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
Header = tuple[bytes, bytes]
SECURITY_HEADERS: Final[tuple[Header, ...]] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


@dataclass(slots=True)
class Guard:
    """One app's limits (``app.state.guard``)."""

    config: HttpConfig
    monotonic: Callable[[], float] = time.monotonic
    limits: ApiLimits = field(init=False)
    trusted: tuple[Network, ...] = field(init=False)
    # What /metrics shows of the HTTP side when it is not this app's alone (the API in
    # processes of its own: all of them together); None: ``limits``' own figures.
    totals: Callable[[], tuple[int, Counter[str]]] | None = None

    def __post_init__(self) -> None:
        self.trusted = networks(self.config.trusted_proxies)
        self.limits = ApiLimits(
            rate_per_s=self.config.rate_per_s,
            burst=self.config.rate_burst,
            max_concurrent=self.config.max_concurrent,
            max_concurrent_per_client=self.config.max_concurrent_per_client,
        )

    def figures(self) -> tuple[int, Counter[str]]:
        """Requests in progress and 429s by limit, for /metrics."""
        if self.totals is not None:
            return self.totals()
        return self.limits.in_progress, self.limits.refused


def client_of(request: Request, trusted: tuple[Network, ...] = ()) -> str:
    """Whom a request's limits count against (``client_key`` of its scope)."""
    return client_key(request.scope, trusted)


def client_key(scope: Scope, trusted: tuple[Network, ...] = ()) -> str:
    """Whom a request's limits count against: its principal, else its address (behind a
    ``trusted`` proxy, the client's it forwarded). Read from the ASGI ``scope`` alone (no
    ``Request`` built): it runs for every request, refused ones too."""
    # ``caller``: what the auth middleware sets (``auth.Caller``) in the request's state.
    state = scope.get("state") or {}
    principal = state.get("principal") or state.get("caller")
    name = getattr(principal, "name", None)
    if isinstance(name, str) and name:
        return f"token:{name}"
    peer = scope.get("client")
    if peer is None:
        return "addr:?"
    forwarded = (
        [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-forwarded-for"]
        if trusted
        else []
    )
    return f"addr:{client_address(peer[0], forwarded, trusted)}"


def response_headers(config: HttpConfig, extra_origin: str | None = None) -> list[Header]:
    """The headers every response carries but those of ``NO_CSP`` pages: the security
    headers and the Content-Security-Policy (see ``with_origin``)."""
    csp = with_origin(config.content_security_policy, extra_origin)
    return [*SECURITY_HEADERS, (b"content-security-policy", csp.encode())]


def with_origin(csp: str, origin: str | None) -> str:
    """``csp`` also allowing images and fetches from ``origin`` (the dashboard's basemap
    tile server, when it is on another host), so configuring one needs no CSP edit."""
    if origin is None:
        return csp
    directives = []
    for directive in csp.split(";"):
        name = directive.split()[0] if directive.split() else ""
        directives.append(
            f"{directive} {origin}" if name in ("img-src", "connect-src") else directive
        )
    return ";".join(directives)


class _BodyTooLargeError(Exception):
    """A streamed request body went past the limit."""


class GuardMiddleware:
    """Size limits and security headers (see the module doc)."""

    def __init__(self, app: ASGIApp, config: HttpConfig, extra_origin: str | None = None) -> None:
        self.app = app
        self.config = config
        self._headers = response_headers(config, extra_origin)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = self._headers if scope.get("path") not in NO_CSP else list(SECURITY_HEADERS)
        refusal = self._refusal(scope)
        if refusal is not None:
            await _plain(send, *refusal, headers)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", ()), *headers]}
            await send(message)

        try:
            await self.app(scope, self._bounded(receive), send_with_headers)
        except _BodyTooLargeError:
            if started:
                raise
            await _plain(send, 413, "request body too large", headers)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        if len(scope.get("query_string", b"")) > self.config.max_query_bytes:
            return 414, f"query string over {self.config.max_query_bytes} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return 400, "content-length: not a number"
                if length > self.config.max_body_bytes:
                    return 413, f"request body over {self.config.max_body_bytes} bytes"
        return None

    def _bounded(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.config.max_body_bytes

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLargeError
            return message

        return bounded


async def _plain(send: Send, status: int, detail: str, headers: list[Header]) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
