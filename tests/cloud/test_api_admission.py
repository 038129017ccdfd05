"""Admission before and after authentication (``admission``): the overall limit refuses
before anything about the caller is looked at (no token needed to be refused, nothing in
the audit log, a counter on /metrics); the client's limits come after authentication and
their 429s are audited; the probes pass every limit and need no token; /readyz answers
from the readiness the process keeps (``readiness.Readiness``), one store check at a
time, never waiting behind a hung one. Over a real SQLite store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from cloud_collector.api import create_app
from cloud_collector.config import HttpConfig
from cloud_collector.errors import StoreError
from cloud_collector.limits import CLIENT_BUSY, SERVER_BUSY, ApiLimits
from cloud_collector.readiness import Readiness
from cloud_collector.store import Store
from tests.support.api_client import api_client
from tests.support.auth import bearer, mint


def test_the_overall_slot_is_taken_apart_from_the_clients() -> None:
    lim = ApiLimits(rate_per_s=100, burst=100, max_concurrent=2, max_concurrent_per_client=1)
    assert lim.enter() is None
    assert lim.admit_client("a", 0) is None
    busy = lim.admit_client("a", 0)  # the client's one slot is taken; the overall slot stays
    assert busy is not None
    assert busy.reason == CLIENT_BUSY
    assert lim.in_progress == 1
    assert lim.enter() is None
    full = lim.enter()
    assert full is not None
    assert (full.reason, full.retry_after_s) == (SERVER_BUSY, 1)
    assert lim.refused == {CLIENT_BUSY: 1, SERVER_BUSY: 1}
    lim.release_client("a")
    lim.leave()
    lim.leave()
    assert lim.in_progress == 0
    with pytest.raises(ValueError, match="without a slot"):
        lim.leave()


def _audited(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(e["route"], e["status"]) for e in map(json.loads, path.read_text().splitlines())]


async def test_the_overall_limit_refuses_before_authentication(
    store: Store, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    app = create_app(
        store, http=HttpConfig(max_concurrent=2, max_concurrent_per_client=2), audit_path=audit
    )
    limits = app.state.guard.limits
    admin = bearer(await mint(store.access, name="admin-one"))
    # Both overall slots taken, as two requests in progress take them.
    assert limits.enter() is None
    assert limits.enter() is None
    for headers in ({}, bearer("tac_" + "x" * 43), admin):  # none, unknown, valid
        async with api_client(app, headers=headers) as c:
            r = await c.get("/v1/events")
            assert r.status_code == 429, (headers, r.text)
            assert r.headers["retry-after"] == "1"
            assert r.json() == {"detail": "too many requests (concurrency): retry after 1 s"}
            assert r.headers["x-content-type-options"] == "nosniff"
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
            # The probes pass every limit, without a token.
            assert (await c.get("/healthz")).json() == {"status": "ok"}
            ready = await c.get("/readyz")
            assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
            assert ready.headers["x-frame-options"] == "DENY"
    assert limits.refused[SERVER_BUSY] == 3
    assert limits.in_progress == 2  # a refusal takes no slot
    limits.leave()
    limits.leave()
    async with api_client(app, headers={}) as anon, api_client(app, headers=admin) as c:
        assert (await anon.get("/v1/events")).status_code == 401  # authentication as before
        assert (await c.get("/v1/events")).status_code == 200
        metrics = (await c.get("/metrics")).text
    assert 'collector_http_refused_total{limit="concurrency"} 3' in metrics
    assert limits.in_progress == 0
    await app.state.audit.close()
    # Refused before authentication: whose request it was is not known, so not audited.
    assert _audited(audit) == [("/v1/events", 200), ("/metrics", 200)]


async def test_a_clients_own_limits_come_after_authentication_and_are_audited(
    store: Store, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    app = create_app(store, http=HttpConfig(rate_per_s=0.01, rate_burst=1), audit_path=audit)
    one = bearer(await mint(store.access, name="one"))
    async with api_client(app, headers=one) as c, api_client(app, headers={}) as anon:
        assert (await c.get("/v1/signs")).status_code == 200
        r = await c.get("/v1/events")
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["detail"].startswith("too many requests (rate): retry after ")
        assert r.headers["referrer-policy"] == "no-referrer"  # from the guard, once
        assert len(r.headers.get_list("referrer-policy")) == 1
        # Without a usable token there is no client to count: authentication answers.
        assert (await anon.get("/v1/events")).status_code == 401
    await app.state.audit.close()
    assert _audited(audit) == [("/v1/signs", 200), ("/v1/events", 429)]
    assert app.state.guard.limits.in_progress == 0


async def test_readyz_says_what_is_wrong(store: Store) -> None:
    connected = False
    app = create_app(store, mqtt_ready=lambda: connected)
    async with api_client(app, headers={}) as c:
        r = await c.get("/readyz")
        assert r.status_code == 503
        assert r.json() == {"status": "not ready", "problems": ["mqtt: not connected"]}
        connected = True
        assert (await c.get("/readyz")).status_code == 200


async def _settle() -> None:
    """Let the background check run to its end (a few turns of the loop)."""
    for _ in range(5):
        await asyncio.sleep(0)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Store:
    """A store's ``ping`` whose answers the test decides: each call waits for the test to
    release it (``answer``) or raises what it is given."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.error: Exception | None = None

    async def ping(self) -> None:
        self.calls += 1
        await self.gate.wait()
        if self.error is not None:
            raise self.error

    def answer(self, error: Exception | None = None) -> None:
        self.error = error
        self.gate.set()


async def test_readiness_checks_the_store_once_at_a_time_and_never_waits_behind_it() -> None:
    clock, db = _Clock(), _Store()
    ready = Readiness(db.ping, lambda: True, monotonic=clock, fresh_s=1.0, stale_s=5.0)
    # The first probes wait for the first check (together: one ping).
    first = [asyncio.create_task(ready.problems()) for _ in range(3)]
    await asyncio.sleep(0)
    db.answer()
    assert await asyncio.gather(*first) == [[], [], []]
    assert db.calls == 1
    # Within FRESH_S: no store round trip at all.
    clock.now += 0.5
    assert [await ready.problems() for _ in range(50)] == [[]] * 50
    assert db.calls == 1
    # Older: the next check starts in the background; probes answer at once meanwhile.
    db.gate.clear()
    clock.now += 1.0
    assert await asyncio.wait_for(ready.problems(), 1) == []
    await _settle()
    assert await asyncio.wait_for(ready.problems(), 1) == []
    assert db.calls == 2
    # A check that has not answered for STALE_S is the answer itself.
    clock.now += 5.0
    assert await asyncio.wait_for(ready.problems(), 1) == ["store: no answer for 5 s"]
    assert db.calls == 2
    db.answer(StoreError("down"))
    await _settle()
    assert ready.known() == ["store: StoreError"]
    # The store back: the next check after FRESH_S clears it.
    db.error = None
    clock.now += 1.0
    await ready.problems()
    await _settle()
    assert ready.known() == []
    assert db.calls == 3


async def test_a_first_probe_waits_at_most_stale_s_for_a_hung_store() -> None:
    db = _Store()
    ready = Readiness(db.ping, lambda: False, stale_s=0.05)
    problems = await asyncio.wait_for(ready.problems(), 2)
    assert problems[0].startswith("store: ")
    assert problems[1] == "mqtt: not connected"
    db.answer()
    await _settle()
    assert ready.known() == ["mqtt: not connected"]
