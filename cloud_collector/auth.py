"""Bearer-token authentication and role checks for every HTTP route.

Tokens are opaque and random (``mint_token``); the store keeps only their SHA-256
(``store.access``). ``ACCESS`` is the one table of which role may use which route, first
match wins, and a path it does not name is admin-only (default deny): a new router needs
one row here. The check runs in one ASGI middleware before routing (``install_auth``), so a
route nobody listed cannot be reached without a token; handlers get the caller (role,
fleets) through the ``CallerDep`` dependency and scope their queries with it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud_collector.audit import AuditTrail
from cloud_collector.errors import StoreError
from cloud_collector.privacy import Privacy
from cloud_collector.roles import Role, hash_token
from cloud_collector.store.access import Access, AuditEntry, TokenRecord
from cloud_collector.store.base import Fleets

log = logging.getLogger(__name__)

_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{16,256}$")
SCHEME: Final = "bearerAuth"
_PARAM = re.compile(r"\\\{[^}]*\\\}")  # an escaped {name} of a route template

PUBLIC: Final[frozenset[Role]] = frozenset()  # no token needed
ALL: Final = frozenset(Role)
FLEET: Final = frozenset({Role.OPERATOR, Role.ADMIN})  # operators see their fleets only
ADMIN: Final = frozenset({Role.ADMIN})

# (path pattern, roles): an exact path, or a prefix followed by "/*" (anything below it).
ACCESS: Final[tuple[tuple[str, frozenset[Role]], ...]] = (
    ("/healthz", PUBLIC),
    ("/readyz", PUBLIC),
    # The dashboard's shell (page, scripts, styles: no data; it asks for a token) and the
    # API's description (no data; it declares the security scheme).
    ("/", PUBLIC),
    ("/static/*", PUBLIC),
    ("/dashboard/config.json", PUBLIC),  # the map's basemap setting: no data
    ("/openapi.json", PUBLIC),
    ("/docs", PUBLIC),
    ("/docs/*", PUBLIC),
    ("/redoc", PUBLIC),
    ("/v1/road-conditions", ALL),  # the city: k-anonymous cell-hours only
    ("/v1/signs", ALL),
    ("/v1/events", ALL),  # the city: the privacy view (privacy.py)
    ("/v1/events/*", FLEET),  # an event's raw evidence frames
    ("/v1/vehicles", FLEET),
    ("/v1/vehicles/*", FLEET),
    ("/v1/alerts", FLEET),
    ("/ogc", ALL),
    ("/ogc/*", ALL),
    ("/tiles/*", ALL),
    ("/metrics", ADMIN),
    ("/v1/audit", ADMIN),
    ("/v1/tokens", ADMIN),
    ("/v1/tokens/*", ADMIN),
)


def roles_for(path: str) -> frozenset[Role]:
    """The roles that may use ``path`` (a request path or a route template); PUBLIC
    (empty) when no token is needed; admin only for a path ``ACCESS`` does not name."""
    for pattern, roles in ACCESS:
        if pattern.endswith("/*"):
            if path.startswith(pattern[:-1]) and len(path) > len(pattern) - 1:
                return roles
        elif path == pattern:
            return roles
    return ADMIN


@dataclass(slots=True)
class Caller:
    """Who makes the current request; ``rows`` is set by the handler for the audit log."""

    name: str
    role: Role
    token_fleets: tuple[str, ...]
    rows: int | None = None

    @property
    def fleets(self) -> Fleets:
        """The fleets whose vehicles this caller may see (None: every fleet)."""
        return self.token_fleets if self.role is Role.OPERATOR else None


async def caller_of(request: Request) -> Caller:
    """The authenticated caller the middleware put on the request (a FastAPI dependency)."""
    caller = getattr(request.state, "caller", None)
    if not isinstance(caller, Caller):
        raise TypeError("no authenticated caller: the route is not behind install_auth")
    return caller


CallerDep = Annotated[Caller, Depends(caller_of)]


@dataclass(slots=True)
class TokenCache:
    """Token lookups by hash, each kept ``ttl_s``: most requests need no store round trip,
    and a revocation takes effect within ``ttl_s``. Unknown tokens are cached too (so a
    client retrying a bad token does not reach the store each time), bounded in number."""

    access: Access
    ttl_s: float = 5.0
    max_entries: int = 10_000
    monotonic: Callable[[], float] = time.monotonic
    _entries: dict[str, tuple[float, TokenRecord | None]] = field(default_factory=dict)

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        now = self.monotonic()
        hit = self._entries.get(token_hash)
        if hit is not None and now < hit[0]:
            return hit[1]
        record = await self.access.token_by_hash(token_hash)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        if self.ttl_s > 0:
            self._entries[token_hash] = (now + self.ttl_s, record)
        return record


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN_SHAPE.match(token):
        return None
    return token


def _unauthorized(detail: str, *, token_given: bool) -> JSONResponse:
    challenge = 'Bearer error="invalid_token"' if token_given else "Bearer"
    return JSONResponse({"detail": detail}, 401, headers={"WWW-Authenticate": challenge})


def route_template(request: Request) -> str:
    """The matched route's path template (never the raw URL, whose query may carry
    secrets); for a request refused before routing, the template of the OpenAPI
    document that matches its path; "(no route)" when none does."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    templates = getattr(request.app.state, "route_templates", None)
    if templates is None:
        paths = request.app.openapi().get("paths", {})
        templates = [(re.compile("^" + _PARAM.sub("[^/]+", re.escape(p)) + "$"), p) for p in paths]
        request.app.state.route_templates = templates
    for pattern, template in templates:
        if pattern.match(request.url.path):
            return str(template)
    return "(no route)"


@dataclass(slots=True)
class Authenticator:
    cache: TokenCache
    audit: AuditTrail
    clock_ms: Callable[[], int]

    async def caller(self, request: Request) -> Caller | Response:
        """The request's caller, or the 401 to answer."""
        header = request.headers.get("authorization")
        token = _bearer(header)
        if token is None:
            detail = "Authorization: expected 'Bearer <token>'" if header else "token required"
            return _unauthorized(detail, token_given=header is not None)
        try:
            record = await self.cache.lookup(hash_token(token))
        except StoreError as exc:
            return JSONResponse({"detail": f"store unavailable: {type(exc).__name__}"}, 503)
        if record is None or not record.usable(self.clock_ms()):
            return _unauthorized("token unknown, expired or revoked", token_given=True)
        return Caller(record.name, record.role, record.fleets)

    def audit_entry(self, request: Request, caller: Caller, status: int) -> None:
        """Log one authenticated request (refused or answered) on the audit trail."""
        self.audit.record(
            AuditEntry(
                time_ms=self.clock_ms(), token=caller.name, role=caller.role.value,
                method=request.method, route=route_template(request),
                status=status, rows=caller.rows,
            )
        )  # fmt: skip


class AuthMiddleware:
    """``Authenticator`` in front of every route, as plain ASGI (no task or response
    wrapper per request): a public path passes through; otherwise a 401/503 without a
    usable token, a 403 for a role the path does not allow, else the route runs with
    ``request.state.caller`` set. The audit entry of an authenticated request is written
    when its response starts (its status, and the ``rows`` the handler set)."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        roles = roles_for(request.url.path)
        if not roles:
            await self.app(scope, receive, send)
            return
        auth = self.authenticator
        found = await auth.caller(request)
        if not isinstance(found, Caller):
            await found(scope, receive, send)
            return
        if found.role not in roles:
            refusal = JSONResponse(
                {"detail": f"role {found.role.value} may not use this route"}, 403
            )
            auth.audit_entry(request, found, refusal.status_code)
            await refusal(scope, receive, send)
            return
        request.state.caller = found

        async def audited(message: Message) -> None:
            if message["type"] == "http.response.start":
                auth.audit_entry(request, found, int(message["status"]))
            await send(message)

        await self.app(scope, receive, audited)


def install_auth(app: FastAPI, authenticator: Authenticator) -> None:
    """Put ``authenticator`` in front of every route of ``app``, and declare the bearer
    scheme in its OpenAPI document on every operation that needs a token."""
    app.add_middleware(AuthMiddleware, authenticator=authenticator)
    app.state.audit = authenticator.audit

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = secured_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def secured_openapi(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    doc.setdefault("components", {})["securitySchemes"] = {
        SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "cloud-collector token create prints a token (docs/access.md)",
        }
    }
    for path, operations in doc.get("paths", {}).items():
        roles = roles_for(path)
        if not roles:
            continue
        who = ", ".join(sorted(r.value for r in roles))
        for operation in operations.values():
            operation["security"] = [{SCHEME: []}]
            operation["description"] = (
                operation.get("description", "") + f"\n\nRoles: {who}."
            ).strip()
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"description": "no token, or unknown, expired or revoked"})
            responses.setdefault("403", {"description": "the token's role may not use this route"})
    return doc


async def privacy_of(request: Request) -> Privacy:
    """The city view's settings ``create_app`` put on the app (a FastAPI dependency)."""
    privacy = request.app.state.privacy
    if not isinstance(privacy, Privacy):
        raise TypeError("the app has no Privacy settings: build it with create_app")
    return privacy


PrivacyDep = Annotated[Privacy, Depends(privacy_of)]


@dataclass(frozen=True, slots=True)
class CityView:
    """What a route must hide for its caller: ``k`` > 0 for the city role (k-anonymous
    cell-hours only, events on their cell's centre), 0 for the others; ``privacy`` the
    pseudonym settings."""

    k: int
    privacy: Privacy


def view_k(caller: Caller, privacy: Privacy) -> int:
    """``CityView.k`` of ``caller``: the k-anonymity threshold for the city, else 0."""
    return privacy.k if caller.role is Role.CITY else 0


async def city_view_of(caller: CallerDep, privacy: PrivacyDep) -> CityView:
    """The caller's view (a FastAPI dependency)."""
    return CityView(view_k(caller, privacy), privacy)


CityViewDep = Annotated[CityView, Depends(city_view_of)]
