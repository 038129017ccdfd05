"""Admission of HTTP requests as plain ASGI layers: under a flood a refusal must cost
next to nothing, or answering 429s takes the API's event loop (and /readyz with it).

The app's layers, outermost first (``api.create_app``)::

    FrontDoor         /healthz, /readyz answered here; the overall limit (``enter``)
    GuardMiddleware   413/414, security headers
    AuthMiddleware    401/403, the caller; the audit entry of an authenticated request
    ClientAdmission   the client's concurrency and rate (``admit_client``)
    routing, handlers

``FrontDoor`` sees a request before anything is parsed or looked up: the probes are
answered from bytes encoded once and the readiness the process keeps
(``readiness.Readiness``), never limited, never authenticated; every other request takes
an overall slot or is refused with a 429 encoded once. Such a refusal names nobody (the
caller is not known yet), so it reveals nothing to an unauthenticated client and has no
audit entry; ``collector_http_refused_total{limit="concurrency"}`` counts it. A
client's own limits need its identity, so they come after authentication; their 429s
are authenticated requests and in the audit log, as before.
"""

from __future__ import annotations

import json
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from cloud_collector.http_guard import EXEMPT, Guard, Header, client_key
from cloud_collector.limits import Refusal
from cloud_collector.readiness import READY_BODY, Readiness, not_ready_body

_JSON: Final = (b"content-type", b"application/json")
HEALTHY_BODY: Final = json.dumps({"status": "ok"}, separators=(",", ":")).encode()
# Encoded refusals kept (one per reason and Retry-After value).
_MAX_ENCODED: Final = 256


class Answers:
    """Whole responses (status, headers, body) sent from bytes encoded once; ``headers``
    go on each of them."""

    def __init__(self, headers: list[Header]) -> None:
        self._headers = headers
        self._refusals: dict[Refusal, tuple[list[Header], bytes]] = {}

    async def send(self, send: Send, status: int, body: bytes) -> None:
        length = (b"content-length", str(len(body)).encode())
        await self._send(send, status, [_JSON, length, *self._headers], body)

    async def refuse(self, send: Send, refusal: Refusal) -> None:
        """The 429 of ``refusal``, with its ``Retry-After``."""
        encoded = self._refusals.get(refusal)
        if encoded is None:
            encoded = self._encode(refusal)
            if len(self._refusals) < _MAX_ENCODED:
                self._refusals[refusal] = encoded
        await self._send(send, 429, *encoded)

    def _encode(self, refusal: Refusal) -> tuple[list[Header], bytes]:
        wait = refusal.retry_after_s
        detail = f"too many requests ({refusal.reason}): retry after {wait} s"
        body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
        headers = [
            _JSON,
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(wait).encode()),
            *self._headers,
        ]
        return headers, body

    @staticmethod
    async def _send(send: Send, status: int, headers: list[Header], body: bytes) -> None:
        # A copy of the list: a layer outside may add to the headers it is given.
        start = {"type": "http.response.start", "status": status, "headers": list(headers)}
        await send(start)
        await send({"type": "http.response.body", "body": body})


class FrontDoor:
    """The outermost layer (see the module doc). ``headers``: those every response
    carries (``http_guard.response_headers``)."""

    def __init__(
        self, app: ASGIApp, guard: Guard, readiness: Readiness, headers: list[Header]
    ) -> None:
        self.app = app
        self.limits = guard.limits
        self.readiness = readiness
        self.answers = Answers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in EXEMPT and scope["method"] == "GET":
            await self._probe(scope["path"], send)
            return
        refusal = self.limits.enter()
        if refusal is not None:
            await self.answers.refuse(send, refusal)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.limits.leave()

    async def _probe(self, path: str, send: Send) -> None:
        if path == "/healthz":
            await self.answers.send(send, 200, HEALTHY_BODY)
            return
        problems = await self.readiness.problems()
        if problems:
            await self.answers.send(send, 503, not_ready_body(problems))
        else:
            await self.answers.send(send, 200, READY_BODY)


class ClientAdmission:
    """The client's limits, once authentication has put the caller on the request:
    one of its slots while its request runs, a 429 when it has none or is over its rate.
    Probes pass (they never reach here behind ``FrontDoor``). Its 429s get the security
    headers from ``GuardMiddleware``, outside it."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard
        self.answers = Answers([])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        guard = self.guard
        client = client_key(scope, guard.trusted)
        refusal = guard.limits.admit_client(client, guard.monotonic())
        if refusal is not None:
            await self.answers.refuse(send, refusal)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            guard.limits.release_client(client)
