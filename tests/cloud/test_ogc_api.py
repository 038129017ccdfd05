"""OGC API - Features over a real SQLite store: landing page, conformance, collections
with extents, items paged by their next links, filters, single features, and bad input
answered with the OGC exception JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud_collector.api import create_app
from cloud_collector.metrics import IngestMetrics
from cloud_collector.store import open_store
from cloud_collector.store.base import COLLECTION_IDS
from tests.support.api_client import api_client
from tests.support.feature_store import counts, seed

Client = httpx.AsyncClient


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "ogc.sqlite3"
    store = await open_store(f"sqlite:///{path}")
    await seed(store)
    await store.close()
    return path


@pytest.fixture
async def client(db: Path) -> AsyncIterator[Client]:
    store = await open_store(f"sqlite:///{db}")
    app = create_app(store, IngestMetrics(), max_limit=50)
    async with api_client(app) as c:
        yield c
    await store.close()


def _rels(body: dict[str, Any]) -> dict[str, str]:
    return {link["rel"]: link["href"] for link in body["links"]}


async def test_landing_conformance_and_collections(client: Client) -> None:
    landing = (await client.get("/ogc")).json()
    rels = _rels(landing)
    assert rels["service-desc"] == "http://t/openapi.json"
    assert rels["conformance"] == "http://t/ogc/conformance"
    assert rels["data"] == "http://t/ogc/collections"
    classes = (await client.get(rels["conformance"])).json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson" in classes
    body = (await client.get(rels["data"])).json()
    assert [c["id"] for c in body["collections"]] == list(COLLECTION_IDS)
    for c in body["collections"]:
        (box,) = c["extent"]["spatial"]["bbox"]
        assert box[0] <= 126.98 <= box[2]
        assert box[1] <= 37.57 <= box[3]
        ((start, end),) = c["extent"]["temporal"]["interval"]
        assert start.startswith("2026-03-02T07:")
        assert start <= end
        assert _rels(c)["items"].endswith(f"/ogc/collections/{c['id']}/items")
    one = await client.get("/ogc/collections/signs")
    assert one.json()["id"] == "signs"


async def _all_items(client: Client, cid: str, **params: str) -> list[dict[str, Any]]:
    url: str | None = f"/ogc/collections/{cid}/items"
    features: list[dict[str, Any]] = []
    first = True
    for _ in range(100):
        if url is None:
            break
        r = await client.get(url, params=params if first else None)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/geo+json")
        body = r.json()
        assert body["numberReturned"] == len(body["features"])
        assert body["timeStamp"].endswith("Z")
        if first:
            total = body.get("numberMatched")
        features += body["features"]
        url = _rels(body).get("next")
        first = False
    assert total == len(features)
    return features


@pytest.mark.parametrize("cid", COLLECTION_IDS)
async def test_items_page_through_every_feature_once(client: Client, db: Path, cid: str) -> None:
    features = await _all_items(client, cid, limit="4")
    ids = [f["id"] for f in features]
    assert len(ids) == len(set(ids)) == counts(db)[cid]
    assert all(f["geometry"] is not None for f in features)


async def test_events_carry_no_vehicle_epoch_or_seq(client: Client) -> None:
    for f in await _all_items(client, "events"):
        assert not {"vehicle", "epoch", "seq"} & set(f["properties"]), f["properties"]
        assert f["properties"]["type"]


async def test_bbox_and_datetime_filters(client: Client) -> None:
    every = await _all_items(client, "events")
    north = await _all_items(client, "events", bbox="126.9,37.5650,127.1,37.6")
    assert 0 < len(north) < len(every)
    assert all(f["geometry"]["coordinates"][1] >= 37.5650 for f in north)
    t = every[3]["properties"]["time"]
    instant = await _all_items(client, "events", datetime=t)
    assert {f["properties"]["time"] for f in instant} == {t}
    closed = await _all_items(client, "events", datetime=f"2026-03-02T07:30:00Z/{t}")
    after = await _all_items(client, "events", datetime=f"{t}/..")
    before = await _all_items(client, "events", datetime=f"../{t}")
    assert len(closed) == len(before)
    assert len(before) + len(after) == len(every) + len(instant)
    hours = await _all_items(client, "road-conditions", datetime="2026-03-02T07:59:59Z")
    assert len(hours) == len(await _all_items(client, "road-conditions"))
    assert not await _all_items(client, "road-conditions", datetime="2026-03-02T08:00:00Z/..")


async def test_limit_above_the_maximum_is_the_maximum(client: Client) -> None:
    for limit in ("100000", "1" + "0" * 30):
        r = await client.get("/ogc/collections/events/items", params={"limit": limit})
        assert r.status_code == 200
        assert r.json()["numberReturned"] <= 50


async def test_limit_is_an_integer_with_bounds_in_the_openapi_document(client: Client) -> None:
    doc = (await client.get("/openapi.json")).json()
    params = doc["paths"]["/ogc/collections/{collection_id}/items"]["get"]["parameters"]
    (limit,) = [p for p in params if p["name"] == "limit"]
    schema = limit["schema"]
    assert (schema["type"], schema["minimum"], schema["maximum"]) == ("integer", 1, 10_000)
    assert schema["default"] == 100
    r = await client.get("/ogc/collections/signs/items", params={"limit": "ten"})
    assert r.status_code == 400
    assert r.json()["description"].startswith("limit: ")


@pytest.mark.parametrize("cid", COLLECTION_IDS)
async def test_single_feature_and_not_found(client: Client, cid: str) -> None:
    first = (await client.get(f"/ogc/collections/{cid}/items", params={"limit": "1"})).json()
    (feature,) = first["features"]
    r = await client.get(f"/ogc/collections/{cid}/items/{feature['id']}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/geo+json")
    assert r.json()["id"] == feature["id"]
    assert r.json()["properties"] == feature["properties"]
    for missing in ("999999", "x", "8a30e1d9e65ffff@0", "-1"):
        r = await client.get(f"/ogc/collections/{cid}/items/{missing}")
        assert r.status_code == 404
        assert r.json()["code"] == "NotFound"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("items", {"bbox": "nan,37,127,38"}),
        ("items", {"bbox": "126,37,inf,38"}),
        ("items", {"bbox": "126,37,127"}),
        ("items", {"bbox": "126,37,127,38,1"}),
        ("items", {"bbox": "170,37,-170,38"}),  # crosses the antimeridian
        ("items", {"bbox": "126,38,127,37"}),
        ("items", {"bbox": "126,-91,127,38"}),
        ("items", {"datetime": "yesterday"}),
        ("items", {"datetime": "2026-03-02T08:00:00Z/2026-03-02T07:00:00Z"}),
        ("items", {"datetime": "2026-03-02T08:00:00Z/x"}),
        ("items", {"datetime": "a/b/c"}),
        ("items", {"datetime": ".."}),
        ("items", {"datetime": "1969-12-31T00:00:00Z"}),
        ("items", {"limit": "0"}),
        ("items", {"limit": "-3"}),
        ("items", {"limit": "ten"}),
        ("items", {"cursor": "garbage!!"}),
        ("items", {"cursor": "Zm9v"}),
        ("items", {"cursor": "OTk5OTk5OTk5OTk5OTk5OTk5OTk5LjE"}),  # 9999...9.1: out of range
        ("items", {"cursor": "x" * 600}),
        ("items", {"f": "html"}),
        ("items", {"colour": "red"}),
        ("", {"f": "xml"}),
    ],
)
async def test_bad_input_is_400_in_ogc_exception_json(
    client: Client, path: str, params: dict[str, str]
) -> None:
    for cid in COLLECTION_IDS:
        r = await client.get(f"/ogc/collections/{cid}/{path}".rstrip("/"), params=params)
        assert r.status_code == 400, (cid, r.status_code, r.text)
        body = r.json()
        assert body["code"] == "InvalidParameterValue"
        assert isinstance(body["description"], str)
        assert "\n" not in body["description"]


async def test_unknown_collection_is_404(client: Client) -> None:
    for path in ("/ogc/collections/nope", "/ogc/collections/nope/items"):
        r = await client.get(path)
        assert r.status_code == 404
        assert r.json()["code"] == "NotFound"
