"""The HTTP side's limits and headers: the admission core (``limits.ApiLimits``, pure)
and the app's guard over a real SQLite store: 429 with Retry-After per client (its
principal's name once authenticated, else its address), 413/414 for oversized requests,
probes never refused, security headers on every response."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI, Request, Response

from cloud_collector.api import create_app
from cloud_collector.config import CollectorConfig, HttpConfig, parse_config
from cloud_collector.errors import ConfigError
from cloud_collector.http_guard import Guard, client_of
from cloud_collector.limits import (
    CLIENT_BUSY,
    RATE,
    SERVER_BUSY,
    ApiLimits,
    client_address,
    networks,
)
from cloud_collector.store import Store, open_store
from tests.support.api_client import api_client
from tests.support.auth import bearer, mint


def test_rate_refuses_beyond_the_burst_and_says_when_to_retry() -> None:
    lim = ApiLimits(rate_per_s=0.5, burst=2, max_concurrent=10, max_concurrent_per_client=10)
    assert lim.admit("a", 0.0) is None
    assert lim.admit("a", 0.0) is None
    refusal = lim.admit("a", 0.0)
    assert refusal is not None
    assert refusal.reason == RATE
    assert refusal.retry_after_s == 2
    assert lim.admit("b", 0.0) is None  # another client has its own bucket
    assert lim.admit("a", 2.0) is None  # one token back after 1 / rate
    assert lim.refused[RATE] == 1


def test_concurrency_per_client_and_overall() -> None:
    lim = ApiLimits(rate_per_s=100, burst=100, max_concurrent=3, max_concurrent_per_client=2)
    assert lim.admit("a", 0) is None
    assert lim.admit("a", 0) is None
    busy = lim.admit("a", 0)
    assert busy is not None
    assert busy.reason == CLIENT_BUSY
    assert busy.retry_after_s == 1
    assert lim.admit("b", 0) is None
    full = lim.admit("c", 0)
    assert full is not None
    assert full.reason == SERVER_BUSY
    lim.release("a")
    assert lim.admit("c", 0) is None
    assert lim.in_progress == 3
    with pytest.raises(ValueError, match="without a slot"):
        lim.release("nobody")


@pytest.mark.parametrize(
    ("http", "key"),
    [
        ({"tls_cert": "/x.pem"}, "http.tls_cert and http.tls_key go together"),
        ({"max_concurrent": 2, "max_concurrent_per_client": 3}, "max_concurrent_per_client"),
        ({"rate_per_s": 0}, "http.rate_per_s"),
        ({"max_query_bytes": 1}, "http.max_query_bytes"),
        ({"metrics_listen": "nowhere"}, "http.metrics_listen"),
    ],
)
def test_bad_http_settings_name_the_key(http: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        parse_config({"http": http}, "c.toml")


def test_http_defaults_are_embedded() -> None:
    http = CollectorConfig().http
    assert http.tls_cert is None
    assert http.metrics_listen is None
    assert "frame-ancestors 'none'" in http.content_security_policy


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(f"sqlite:///{tmp_path / 'l.sqlite3'}")
    yield s
    await s.close()


def _app(store: Store, **http: object) -> FastAPI:
    return create_app(store, http=HttpConfig.model_validate(http))


async def test_rate_limit_is_a_429_with_retry_after(store: Store) -> None:
    app = _app(store, rate_per_s=0.01, rate_burst=3)
    async with api_client(app) as c:
        codes = [(await c.get("/v1/signs")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = await c.get("/v1/events")
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["detail"].startswith("too many requests (rate)")
        # The probes are never refused.
        assert (await c.get("/readyz")).status_code == 200
        assert (await c.get("/healthz")).status_code == 200
    # Another address has its own budget.
    async with api_client(app, client=("127.0.0.2", 9)) as other:
        assert (await other.get("/v1/signs")).status_code == 200
        metrics = (await other.get("/metrics")).text
    assert 'collector_http_refused_total{limit="rate"} 2' in metrics
    assert "collector_http_requests_in_progress 1" in metrics  # the scrape itself


async def test_limits_count_per_principal_once_authenticated(store: Store) -> None:
    app = _app(store, rate_per_s=0.01, rate_burst=1)

    @app.middleware("http")
    async def principal(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        name = request.headers.get("x-test-principal")
        if name:
            request.state.principal = SimpleNamespace(name=name, role="city")
        return await call_next(request)

    async with api_client(app) as c:
        assert (await c.get("/v1/signs", headers={"x-test-principal": "a"})).status_code == 200
        assert (await c.get("/v1/signs", headers={"x-test-principal": "a"})).status_code == 429
        # Same address, another token: its own bucket.
        assert (await c.get("/v1/signs", headers={"x-test-principal": "b"})).status_code == 200


async def test_concurrency_beyond_the_bound_is_a_429(store: Store) -> None:
    app = _app(store, max_concurrent=3, max_concurrent_per_client=2)
    limits = app.state.guard.limits
    one = bearer(await mint(store.access, name="one"))
    two = bearer(await mint(store.access, name="two"))
    # Two requests of this client in progress (slots taken as a running request does).
    assert limits.admit("token:one", 0) is None
    assert limits.admit("token:one", 0) is None
    async with api_client(app, headers=one) as c:
        r = await c.get("/v1/events")
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert "client_concurrency" in r.json()["detail"]
        async with api_client(app, headers=two) as other:
            assert (await other.get("/v1/events")).status_code == 200
            assert limits.admit("addr:127.0.0.4", 0) is None  # now 3 of 3 overall
            r = await other.get("/v1/events")
            assert r.status_code == 429
            assert "(concurrency)" in r.json()["detail"]
            assert (await other.get("/readyz")).status_code == 200
    limits.release("addr:127.0.0.4")
    limits.release("token:one")
    assert limits.in_progress == 1


async def test_oversized_query_and_body(store: Store) -> None:
    app = _app(store, max_query_bytes=64, max_body_bytes=10)
    async with api_client(app) as c:
        r = await c.get("/v1/events", params={"type": "x" * 100})
        assert r.status_code == 414
        assert "query string" in r.json()["detail"]
        r = await c.request("GET", "/v1/events", content=b"x" * 11)
        assert r.status_code == 413
        assert "request body" in r.json()["detail"]

        async def chunks() -> AsyncIterator[bytes]:  # no content-length: streamed
            for _ in range(5):
                yield b"x" * 5

        r = await c.request("POST", "/v1/events", content=chunks())
        assert r.status_code in (405, 413)
        assert (await c.get("/v1/events", params={"type": "fcw"})).status_code == 200


async def test_limit_is_capped_everywhere(store: Store) -> None:
    app = create_app(store, max_limit=50)
    async with api_client(app) as c:
        for path in ("/v1/events", "/v1/vehicles/taxi-a/health"):
            r = await c.get(path, params={"limit": "51"})
            assert r.status_code == 400, path
            assert r.json()["detail"].startswith("limit:"), path


@pytest.mark.parametrize("path", ["/", "/v1/signs", "/readyz", "/static/main.js", "/nope"])
async def test_security_headers_on_every_response(store: Store, path: str) -> None:
    async with api_client(_app(store)) as c:
        r = await c.get(path)
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    csp = r.headers["content-security-policy"]
    for directive in ("script-src 'self'", "frame-ancestors 'none'", "worker-src 'self' blob:"):
        assert directive in csp
    assert "unsafe-inline" not in csp


def test_the_dashboard_page_has_no_inline_script_or_style() -> None:
    from cloud_collector.dashboard import INDEX

    html = INDEX.read_text(encoding="utf-8").lower()
    assert "<style" not in html
    assert " style=" not in html
    for tag in html.split("<script")[1:]:
        assert tag.split(">", 1)[0].strip().startswith("src="), tag[:80]
    assert " onclick=" not in html
    assert " onload=" not in html


def test_a_basemap_on_another_host_is_allowed_by_the_csp() -> None:
    from cloud_collector.config import DashboardConfig
    from cloud_collector.http_guard import with_origin

    origin = DashboardConfig(
        basemap_tiles="https://tiles.example:8443/{z}/{x}/{y}.png"
    ).basemap_origin()
    assert origin == "https://tiles.example:8443"
    assert DashboardConfig(basemap_tiles="/tiles/base/{z}/{x}/{y}.png").basemap_origin() is None
    csp = with_origin("default-src 'self'; img-src 'self' data:; connect-src 'self'", origin)
    assert csp == (
        "default-src 'self'; img-src 'self' data: https://tiles.example:8443;"
        " connect-src 'self' https://tiles.example:8443"
    )


PROXY = ("10.0.0.5", 4000)


def test_the_client_behind_trusted_proxies_is_the_right_most_untrusted_address() -> None:
    trusted = networks(["10.0.0.0/24", "192.0.2.7", "2001:db8::/32"])
    # Not from a trusted proxy: the header is the client's own claim, ignored.
    assert client_address("198.51.100.9", ["203.0.113.1"], trusted) == "198.51.100.9"
    assert client_address("10.0.0.5", ["203.0.113.1"], ()) == "10.0.0.5"
    # From one: what it appended; the rest is the client's claim.
    assert client_address("10.0.0.5", ["6.6.6.6, 203.0.113.1"], trusted) == "203.0.113.1"
    # A chain of trusted proxies, over several header lines.
    assert client_address("10.0.0.5", ["6.6.6.6, 203.0.113.1", "192.0.2.7"], trusted) == (
        "203.0.113.1"
    )
    assert client_address("10.0.0.5", ["198.51.100.1, 2001:db8::1"], trusted) == "198.51.100.1"
    assert client_address("10.0.0.5", ["2001:0DB9::0001"], trusted) == "2001:db9::1"
    # Nothing but proxies, no header, or an entry that is no address: the last proxy.
    assert client_address("10.0.0.5", ["10.0.0.9"], trusted) == "10.0.0.9"
    assert client_address("10.0.0.5", [], trusted) == "10.0.0.5"
    assert client_address("10.0.0.5", ["203.0.113.1, unknown"], trusted) == "10.0.0.5"
    assert client_address("::ffff:10.0.0.5", ["203.0.113.1"], trusted) == "203.0.113.1"


@pytest.mark.parametrize(
    ("proxies", "message"),
    [
        (["10.0.0.0/33"], "http.trusted_proxies.*'10.0.0.0/33' is not an IP address or CIDR"),
        (["proxy.local"], "http.trusted_proxies.*'proxy.local'"),
        ("10.0.0.1", "http.trusted_proxies"),
    ],
)
def test_bad_trusted_proxies_name_the_key(proxies: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"http": {"trusted_proxies": proxies}}, "c.toml")


def _request(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers,
             "client": (peer, 4000), "query_string": b""}  # fmt: skip
    return Request(scope)


def test_the_guard_reads_every_forwarded_header_only_from_a_trusted_proxy() -> None:
    guard = Guard(HttpConfig(trusted_proxies=["10.0.0.0/24", "::1"]))
    forwarded = _request("10.0.0.5", "6.6.6.6, 203.0.113.1", "10.0.0.7")
    assert client_of(forwarded, guard.trusted) == "addr:203.0.113.1"
    assert client_of(_request("::1", "203.0.113.2"), guard.trusted) == "addr:203.0.113.2"
    assert client_of(_request("198.51.100.9", "203.0.113.1"), guard.trusted) == (
        "addr:198.51.100.9"
    )
    untrusting = Guard(HttpConfig())
    assert untrusting.trusted == ()
    assert client_of(forwarded, untrusting.trusted) == "addr:10.0.0.5"


async def test_tokens_from_one_address_have_a_budget_each(store: Store) -> None:
    """Behind a proxy every request has the proxy's address: authenticated requests
    count against their token, not against it."""
    app = _app(store, rate_per_s=0.01, rate_burst=1)
    async with api_client(app) as a, api_client(app) as b:
        assert (await a.get("/v1/signs")).status_code == 200
        assert (await a.get("/v1/signs")).status_code == 429
        assert (await b.get("/v1/signs")).status_code == 200
