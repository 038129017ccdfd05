"""Who may see what over HTTP: tokens (by hash only), the route table, an operator's fleet
scope, the city's view (no vehicle ids, epochs or seqs; per-day pseudonyms; k-anonymous
cell-hours), expired and revoked tokens, the audit log. On SQLite, and the scope and
k-anonymity once on PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import h3
import httpx
import pytest
from fastapi.routing import APIRoute

from cloud_collector import cli
from cloud_collector.api import ROUTERS, create_app
from cloud_collector.auth import TokenCache, roles_for
from cloud_collector.config import AuthConfig
from cloud_collector.dashboard import router as dashboard_router
from cloud_collector.errors import QueryError
from cloud_collector.privacy import CityIds, pseudonym
from cloud_collector.roles import Role
from cloud_collector.routes.params import parse_time
from cloud_collector.store import Store, open_store
from cloud_collector.store import aggregate as agg
from cloud_collector.store.access import Access
from cloud_collector.store.reads import decode_cursor, encode_cursor
from harness.postgres import PgHarness
from protocol.batch import Batch
from protocol.records import Event, FrameRef, GnssFix
from tests.support.auth import api_client, bearer, mint
from tests.support.fuzz import fuzz, operations_of
from tests.support.store_records import LAT, LON, T0, east

DAY = 86_400_000
EPOCH = 987_654_321_987_654
FLEETS = {"taxi-a1": "fleet-a", "taxi-a2": "fleet-a", "taxi-b1": "fleet-b"}
BUSY = (LAT, LON)  # every vehicle, both days
QUIET = east(LAT, LON, 2_000)  # taxi-a1 alone
ALL_GET = ("/v1/road-conditions", "/v1/signs", "/v1/events")


def _event(kind: str, t: int, where: tuple[float, float]) -> Event:
    gnss = GnssFix(time_ms=t, lat=where[0], lon=where[1], mode=3, speed_mps=10.0)
    return Event(kind, t, 36.0, gnss, FrameRef("cam", 0x700), {"sound_code": 4})


async def _seed(store: Store) -> None:
    seq = 0
    for day in (0, 1):
        for vehicle, fleet in FLEETS.items():
            seq += 1
            t = T0 + day * DAY + seq * 1000
            events = [_event("fcw", t, BUSY), _event("ldw_left", t + 100, BUSY)]
            if vehicle == "taxi-a1" and day == 0:
                events.append(_event("fcw", t + 200, QUIET))
            b = Batch.build(
                fleet_id=fleet, vehicle_id=vehicle, epoch=EPOCH + day, seq=seq, sent_ms=t + 500,
                events=events, gnss=[e.fix for e in events if e.fix is not None],
            )  # fmt: skip
            await store.ingest(b, topic_channel="batch", payload_bytes=100, received_ms=t + 600)


def _cell(where: tuple[float, float]) -> str:
    return str(h3.int_to_str(agg.parent(agg.cell_at(*where))))


@pytest.fixture
async def seeded(store: Store) -> Store:
    await _seed(store)
    return store


def _app(store: Store, **kw: Any) -> Any:
    return create_app(store, clock_ms=lambda: T0 + 3 * DAY, **kw)


@pytest.fixture
async def clients(seeded: Store) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    app = _app(seeded)
    access = seeded.access
    async with (
        api_client(app, access, Role.ADMIN) as admin,
        api_client(app, access, Role.CITY) as city,
        api_client(app, access, Role.OPERATOR, fleets=("fleet-a",)) as op_a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as anon,
    ):
        yield {"admin": admin, "city": city, "op_a": op_a, "anon": anon}


def _routes() -> list[APIRoute]:
    """Every route of the app (its routers are included lazily: walk them)."""
    return [
        r for router in (*ROUTERS, dashboard_router) for r in router.routes
        if isinstance(r, APIRoute)
    ]  # fmt: skip


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


async def test_without_a_token_every_route_but_health_is_401(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    walked = 0
    for route in _routes():
        path = _concrete(route.path)
        r = await clients["anon"].get(path)
        if route.path in ("/healthz", "/readyz", "/") or not route.include_in_schema:
            assert r.status_code != 401, path
            continue
        walked += 1
        assert r.status_code == 401, (path, r.status_code)
        assert r.headers["www-authenticate"].startswith("Bearer"), path
    assert walked >= 9
    for path in ("/ogc/collections", "/tiles/1/2/3", "/v1/anything-new", "/v1/tokens"):
        assert (await clients["anon"].get(path)).status_code == 401, path
    bad = await clients["anon"].get("/v1/events", headers=bearer("tac_" + "x" * 43))
    assert bad.status_code == 401
    assert "invalid_token" in bad.headers["www-authenticate"]
    assert (
        await clients["anon"].get("/v1/events", headers={"Authorization": "Basic x"})
    ).status_code == 401


async def test_a_route_missing_from_the_table_is_admin_only(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    assert roles_for("/v1/anything-new") == frozenset({Role.ADMIN})
    assert (await clients["op_a"].get("/v1/anything-new")).status_code == 403
    assert (await clients["city"].get("/v1/anything-new")).status_code == 403
    assert (await clients["admin"].get("/v1/anything-new")).status_code == 404
    assert roles_for("/ogc") == roles_for("/ogc/collections/x/items") == frozenset(Role)
    assert roles_for("/tiles/10/1/2.pbf") == frozenset(Role)


def _city_concrete(path: str) -> str:
    """A path the city may call with data behind it: the OGC events collection, the
    events tile layer's whole-world tile."""
    for name, value in (("collection_id", "events"), ("layer", "events"), ("z", "0"),
                        ("x", "0"), ("y", "0"), ("feature_id", "999999")):  # fmt: skip
        path = path.replace("{" + name + "}", value)
    return _concrete(path)


def _mvt_json(body: bytes) -> Any:
    import mapbox_vector_tile

    return mapbox_vector_tile.decode(body)


def _walk_json(value: Any) -> list[str]:
    """Every key of ``value``, at any depth."""
    if isinstance(value, dict):
        return [k for k, v in value.items() for k in [k, *_walk_json(v)]]
    if isinstance(value, list):
        return [k for v in value for k in _walk_json(v)]
    return []


async def test_the_city_sees_no_vehicle_id_epoch_or_seq_anywhere(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    city = clients["city"]
    for path in ("/v1/vehicles", "/v1/vehicles/taxi-a1", "/v1/vehicles/taxi-a1/health",
                 "/v1/alerts", "/metrics", "/v1/audit", "/v1/events/1/frames"):  # fmt: skip
        assert (await city.get(path)).status_code == 403, path
    assert (await city.get("/v1/events", params={"vehicle": "taxi-a1"})).status_code == 403
    readable = [r.path for r in _routes() if Role.CITY in roles_for(r.path) and r.include_in_schema]
    assert set(ALL_GET) <= set(readable)
    for path in readable:
        r = await city.get(_city_concrete(path))
        if "{feature_id}" in path:
            assert r.status_code == 404, (path, r.text)  # checked through the items page
            continue
        assert r.status_code == 200, (path, r.text)
        text, body = r.text, r.json() if not path.endswith(".mvt") else _mvt_json(r.content)
        if path.endswith(".mvt"):
            text = json.dumps(body)
        for secret in (*FLEETS, *set(FLEETS.values()), str(EPOCH), str(EPOCH + 1)):
            assert secret not in text, (path, secret)
        keys = set(_walk_json(body))
        assert not keys & {"vehicle", "fleet", "epoch", "seq", "last_seq"}, (path, keys)
    events = (await city.get("/v1/events")).json()["features"]
    assert events, "the busy cell's events are visible to the city"
    busy = _cell(BUSY)
    for f in events:
        assert f["properties"]["h3"] == busy
        lon, lat = f["geometry"]["coordinates"]
        assert (lat, lon) == pytest.approx(agg.centre(agg.parent(agg.cell_at(*BUSY))))


async def test_k_anonymity_hides_a_cell_with_fewer_vehicles_from_the_city_only(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    quiet = _cell(QUIET)

    async def cells(who: str) -> set[str]:
        body = (await clients[who].get("/v1/road-conditions")).json()
        return {f["id"].split("@")[0] for f in body["features"]}

    assert quiet in await cells("op_a")
    assert quiet not in await cells("city")
    assert _cell(BUSY) in await cells("city")
    city_events = (await clients["city"].get("/v1/events")).json()["features"]
    assert quiet not in {f["properties"]["h3"] for f in city_events}
    op_events = (await clients["op_a"].get("/v1/events")).json()["features"]
    assert any(f["geometry"]["coordinates"][0] == pytest.approx(QUIET[1]) for f in op_events)


async def test_k_anonymity_holds_on_the_ogc_api_and_the_tiles_too(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    quiet, busy = _cell(QUIET), _cell(BUSY)

    async def ogc_cells(who: str) -> set[str]:
        r = await clients[who].get("/ogc/collections/road-conditions/items")
        return {str(f["id"]).split("@")[0] for f in r.json()["features"]}

    assert quiet in await ogc_cells("op_a")
    assert await ogc_cells("city") == {busy}
    ogc_events = (await clients["city"].get("/ogc/collections/events/items")).json()
    assert ogc_events["features"]
    assert {f["properties"]["h3"] for f in ogc_events["features"]} == {busy}

    async def tile_events(who: str) -> list[Any]:
        r = await clients[who].get(
            "/tiles/events/0/0/0.mvt", params={"since": "1970-01-02T00:00:00Z"}
        )
        assert r.status_code == 200, r.text
        features: list[Any] = _mvt_json(r.content).get("events", {}).get("features", [])
        return features

    assert len(await tile_events("op_a")) > len(await tile_events("city")) > 0


async def test_pseudonyms_differ_across_days_and_hold_within_a_day(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    features = (await clients["city"].get("/v1/events", params={"limit": "1000"})).json()[
        "features"
    ]
    by_day: dict[str, set[str]] = {}
    for f in features:
        by_day.setdefault(f["properties"]["time"][:10], set()).add(f["properties"]["pseudonym"])
    day1, day2 = sorted(by_day)
    # Three vehicles a day, two events each: three pseudonyms a day, none shared.
    assert len(by_day[day1]) == len(by_day[day2]) == 3
    assert not by_day[day1] & by_day[day2]
    key = b"k"
    assert pseudonym(key, "taxi-a1", T0) == pseudonym(key, "taxi-a1", T0 + 3_600_000)
    assert pseudonym(key, "taxi-a1", T0) != pseudonym(key, "taxi-a1", T0 + DAY)
    assert pseudonym(key, "taxi-a1", T0) != pseudonym(key, "taxi-a2", T0)
    assert pseudonym(key, "taxi-a1", T0) != pseudonym(b"other", "taxi-a1", T0)


async def test_the_generated_pseudonym_key_is_kept_in_the_store(seeded: Store) -> None:
    async def first_pseudonym(app: Any) -> str:
        async with api_client(app, seeded.access, Role.CITY) as city:
            return str(
                (await city.get("/v1/events")).json()["features"][0]["properties"]["pseudonym"]
            )

    again = await first_pseudonym(_app(seeded))
    assert again == await first_pseudonym(_app(seeded))  # a restart keeps the key
    configured = AuthConfig.model_validate({"pseudonym_secret": "from the config"})
    assert await first_pseudonym(_app(seeded, auth=configured)) != again


async def test_an_operator_sees_nothing_of_another_fleet(
    clients: dict[str, httpx.AsyncClient], seeded: Store
) -> None:
    op = clients["op_a"]
    vehicles = (await op.get("/v1/vehicles")).json()["vehicles"]
    assert {v["vehicle"] for v in vehicles} == {"taxi-a1", "taxi-a2"}
    assert (await op.get("/v1/vehicles/taxi-b1")).status_code == 404
    assert (await op.get("/v1/vehicles/taxi-b1/health")).status_code == 404
    assert (await op.get("/v1/vehicles/taxi-a1")).status_code == 200
    assert (await op.get("/v1/alerts", params={"vehicle": "taxi-b1"})).json() == []
    texts = [(await op.get(p, params={"limit": "1000"})).text for p in ("/v1/events", "/v1/alerts")]
    assert all("taxi-b1" not in t and "fleet-b" not in t for t in texts)
    events = json.loads(texts[0])["features"]
    assert {f["properties"]["fleet"] for f in events} == {"fleet-a"}
    # An event of fleet B exists (the admin sees it), but not for the operator.
    admin_events = (await clients["admin"].get("/v1/events", params={"vehicle": "taxi-b1"})).json()
    b_id = admin_events["features"][0]["id"]
    frames = await op.get(f"/v1/events/{b_id}/frames")
    assert frames.status_code == 404
    assert "taxi-b1" not in frames.text


async def test_expired_and_revoked_tokens_are_401(seeded: Store) -> None:
    app = _app(seeded, auth=AuthConfig(cache_s=0))
    access = seeded.access
    expired = await mint(access, Role.ADMIN, expires_ms=T0 + 3 * DAY - 1)
    live = await mint(access, Role.ADMIN, name="soon-revoked", expires_ms=T0 + 4 * DAY)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/v1/signs", headers=bearer(expired))).status_code == 401
        assert (await c.get("/v1/signs", headers=bearer(live))).status_code == 200
        assert await access.revoke_token("soon-revoked", T0)
        assert (await c.get("/v1/signs", headers=bearer(live))).status_code == 401


async def test_the_token_cache_sees_a_revocation_after_its_ttl(seeded: Store) -> None:
    now = [0.0]
    access: Access = seeded.access
    token = await mint(access, Role.CITY, name="cached")
    cache = TokenCache(access, ttl_s=5.0, monotonic=lambda: now[0])
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert (await cache.lookup(digest)) is not None
    await access.revoke_token("cached", T0)
    now[0] = 4.9
    found = await cache.lookup(digest)
    assert found is not None
    assert found.revoked_ms is None  # still the cached answer
    now[0] = 5.0
    found = await cache.lookup(digest)
    assert found is not None
    assert found.revoked_ms is not None


async def test_tokens_are_stored_only_as_their_hash(seeded: Store) -> None:
    token = await mint(seeded.access, Role.OPERATOR, fleets=("fleet-a",), name="hashed")
    rows = await seeded.runner.run(lambda tx: tx.fetch("SELECT * FROM api_tokens"))  # type: ignore[attr-defined]
    assert rows
    text = repr([tuple(r) for r in rows])
    assert token not in text
    assert token[4:] not in text
    assert hashlib.sha256(token.encode()).hexdigest() in text


async def test_the_audit_log_has_each_request_as_a_json_line_and_in_the_store(
    seeded: Store, tmp_path: Path
) -> None:
    lines = tmp_path / "audit.jsonl"
    app = _app(seeded, audit_path=lines)
    async with (
        api_client(app, seeded.access, Role.CITY) as city,
        api_client(app, seeded.access, Role.ADMIN) as admin,
    ):
        assert (await city.get("/v1/events", params={"limit": "1000"})).status_code == 200
        assert (await city.get("/v1/vehicles/taxi-a1")).status_code == 403
        body = (await admin.get("/v1/audit")).json()
    entries = body["entries"]
    assert [(e["role"], e["route"], e["status"]) for e in entries] == [
        ("city", "/v1/events", 200),
        ("city", "/v1/vehicles/{vehicle_id}", 403),
    ]
    assert entries[0]["rows"] == 12
    assert entries[0]["token"].startswith("test-city-")
    written = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [w["route"] for w in written] == ["/v1/events", "/v1/vehicles/{vehicle_id}", "/v1/audit"]
    assert all("limit" not in w["route"] for w in written)


async def test_the_openapi_document_declares_the_bearer_scheme(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    doc = (await clients["anon"].get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert doc["paths"]["/v1/events"]["get"]["security"] == [{"bearerAuth": []}]
    assert "security" not in doc["paths"]["/healthz"]["get"]


def test_token_commands_print_once_and_name_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "s.sqlite3"}"\n')
    base = ["token", "create", "--config", str(cfg)]
    assert cli.main([*base, "--role", "city", "--name", "traffic-backend", "--expires", "90d"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"tac_[A-Za-z0-9_-]{43}", token)
    for args, message in (
        (["--role", "mayor", "--name", "x"], "--role: unknown role 'mayor'"),
        (["--role", "operator", "--name", "x"], "--fleet: an operator token needs"),
        (["--role", "city", "--name", "traffic-backend"], "name: a token named 'traffic-backend'"),
        (["--role", "city", "--name", "y", "--expires", "3 years"], "--expires: '3 years'"),
    ):
        assert cli.main([*base, *args]) == 1
        err = capsys.readouterr().err
        assert message in err
        assert err.count("\n") == 1, err
    assert cli.main(["token", "list", "--config", str(cfg)]) == 0
    listing = capsys.readouterr().out
    assert "traffic-backend\tcity" in listing
    assert token not in listing
    assert cli.main(["token", "revoke", "traffic-backend", "--config", str(cfg)]) == 0
    assert cli.main(["token", "revoke", "traffic-backend", "--config", str(cfg)]) == 1
    assert "NAME: no unrevoked token named 'traffic-backend'" in capsys.readouterr().err


async def test_operator_scope_and_k_anonymity_on_postgresql(pg_server: PgHarness) -> None:
    store = await open_store(pg_server.create_database("auth_scope"))
    try:
        await _seed(store)
        app = _app(store)
        async with (
            api_client(app, store.access, Role.OPERATOR, fleets=("fleet-b",)) as op_b,
            api_client(app, store.access, Role.CITY) as city,
        ):
            vehicles = (await op_b.get("/v1/vehicles")).json()["vehicles"]
            assert [v["vehicle"] for v in vehicles] == ["taxi-b1"]
            events = (await op_b.get("/v1/events")).json()["features"]
            assert {f["properties"]["vehicle"] for f in events} == {"taxi-b1"}
            cells = (await city.get("/v1/road-conditions")).json()["features"]
            assert {f["id"].split("@")[0] for f in cells} == {_cell(BUSY)}
            city_text = (await city.get("/v1/events")).text
            assert not any(v in city_text for v in FLEETS)
    finally:
        await store.close()


@pytest.mark.parametrize("role", [Role.CITY, Role.OPERATOR])
def test_fuzz_as_each_role_never_sees_a_5xx(tmp_path: Path, role: Role) -> None:
    """The schemathesis fuzz of test_collector_api (admin) also as city and operator, on
    the operations the role may use, with fewer examples each."""
    loop = asyncio.new_event_loop()
    try:
        store = loop.run_until_complete(open_store(f"sqlite:///{tmp_path / 'fuzz.sqlite3'}"))
        loop.run_until_complete(_seed(store))
        app = _app(store)
        fleets = ("fleet-a",) if role is Role.OPERATOR else ()
        headers = bearer(loop.run_until_complete(mint(store.access, role, fleets=fleets)))
        usable = [op for op in operations_of(app) if role in roles_for(op.path)]
        assert len(usable) >= (3 if role is Role.CITY else 8)
        fuzz(usable, headers, lambda _: 10)
    finally:
        loop.run_until_complete(store.close())
        loop.close()


async def test_a_city_bbox_selects_by_cell_centre_not_the_exact_position(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    lat, lon = BUSY
    exact = f"{lon - 1e-6},{lat - 1e-6},{lon + 1e-6},{lat + 1e-6}"
    assert (await clients["op_a"].get("/v1/events", params={"bbox": exact})).json()["features"]
    assert not (await clients["city"].get("/v1/events", params={"bbox": exact})).json()["features"]
    c_lat, c_lon = agg.centre(agg.parent(agg.cell_at(*BUSY)))
    around = f"{c_lon - 1e-6},{c_lat - 1e-6},{c_lon + 1e-6},{c_lat + 1e-6}"
    assert (await clients["city"].get("/v1/events", params={"bbox": around})).json()["features"]


def _ms(iso: str) -> int:
    ms = parse_time("time", iso)
    assert ms is not None
    return ms


async def _city_pages(city: httpx.AsyncClient, path: str, params: dict[str, str]) -> list[Any]:
    """Every page of ``path`` for the city, one feature a page, following its cursors
    (``next_cursor``, or the OGC ``next`` link); the cursors are checked on the way."""
    pages: list[Any] = []
    url: str | None = path
    for _ in range(50):
        if url is None:
            return pages
        r = await city.get(url, params=params if url == path else None)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body)
        nxt = [x["href"] for x in body.get("links", []) if x["rel"] == "next"]
        cursor = body.get("next_cursor") or (httpx.URL(nxt[0]).params["cursor"] if nxt else None)
        if cursor is not None:
            # Sealed: not the store's cursor (time.id in base64), nothing of a store id.
            with pytest.raises(QueryError):
                decode_cursor(cursor)
        url = None if cursor is None else (nxt[0] if nxt else f"{path}?cursor={cursor}")
    raise AssertionError("paging did not end")


async def test_the_city_gets_event_times_to_the_minute_and_ids_of_no_store_meaning(
    clients: dict[str, httpx.AsyncClient],
) -> None:
    city, admin = clients["city"], clients["admin"]
    exact = (await admin.get("/v1/events", params={"limit": "1000"})).json()["features"]
    assert any(_ms(f["properties"]["time"]) % 60_000 for f in exact)
    store_ids = {str(f["id"]) for f in exact}
    whole = (await city.get("/v1/events", params={"limit": "1000"})).json()["features"]
    assert whole
    for f in whole:
        assert _ms(f["properties"]["time"]) % 60_000 == 0, f
        assert re.fullmatch(r"[0-9a-f]{32}", f["id"]), f
        assert f["id"] not in store_ids, f
    paged = await _city_pages(city, "/v1/events", {"limit": "1"})
    assert [f["id"] for p in paged for f in p["features"]] == [f["id"] for f in whole]
    # The OGC collection: the same ids, one per page through the next links, and each
    # found again by its id; a store id is no feature of the city's.
    ogc = await _city_pages(city, "/ogc/collections/events/items", {"limit": "1"})
    assert [f["id"] for p in ogc for f in p["features"]] == [f["id"] for f in whole]
    one = await city.get(f"/ogc/collections/events/items/{whole[0]['id']}")
    assert one.status_code == 200, one.text
    assert one.json()["properties"] == whole[0]["properties"]
    for bad_id in (sorted(store_ids)[0], "0" * 32, whole[0]["id"][:-1] + "x"):
        r = await city.get(f"/ogc/collections/events/items/{bad_id}")
        assert r.status_code == 404, (bad_id, r.text)
    # A cursor of the store's form, or one tampered with, is a 400.
    store_cursor = encode_cursor(T0, 1)
    for path in ("/v1/events", "/ogc/collections/events/items"):
        r = await city.get(path, params={"cursor": store_cursor})
        assert r.status_code == 400, (path, r.text)
    tile = await city.get("/tiles/events/0/0/0.mvt", params={"since": "1970-01-02T00:00:00Z"})
    points = _mvt_json(tile.content)["events"]["features"]
    assert points
    assert all(p["properties"]["time_ms"] % 60_000 == 0 for p in points)


def test_city_ids_hold_within_a_day_and_differ_across_days_and_keys() -> None:
    ids = CityIds(b"k")
    same_day = ids.event_id(7, T0), ids.event_id(7, T0 + 3_600_000)
    assert same_day[0] == same_day[1]
    assert ids.event_id(7, T0) != ids.event_id(7, T0 + DAY)
    assert ids.event_id(7, T0) != CityIds(b"other").event_id(7, T0)
    assert ids.event_of(ids.event_id(7, T0)) == (T0 // DAY, 7)
    assert ids.unseal(ids.seal(encode_cursor(T0, 7))) == encode_cursor(T0, 7)
    with pytest.raises(QueryError, match="cursor"):
        CityIds(b"other").unseal(ids.seal(encode_cursor(T0, 7)))
