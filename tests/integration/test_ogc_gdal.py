"""The OGC API as GDAL's OGC API - Features driver (Debian's gdal-bin) sees it, against a
collector process: the layers, a spatial filter with a feature count, and ``ogr2ogr`` to a
GeoPackage read back with the store's counts."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from cloud_collector.store import open_store
from cloud_collector.store.base import COLLECTION_IDS
from harness.collector import CollectorProcess, mint_token, write_config
from harness.mosquitto import MosquittoHarness, free_port
from harness.postgres import PgHarness
from tests.support.feature_store import counts, seed

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="gdal-bin is not installed"),
]
_db_names = itertools.count()
GDAL_TIMEOUT_S = 60


def gdal_env(auth: dict[str, str]) -> dict[str, str]:
    """The environment of every GDAL command: the one place request headers go (``auth``:
    the collector's bearer token)."""
    headers = ["Accept: application/geo+json, application/json"]
    headers += [f"{name}: {value}" for name, value in auth.items()]
    return {
        **os.environ,
        "GDAL_HTTP_HEADERS": "\r\n".join(headers),
        "GDAL_HTTP_TIMEOUT": "20",
        "CPL_VSIL_CURL_NON_CACHED": "",
    }


def gdal(auth: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        args,
        env=gdal_env(auth),
        capture_output=True,
        text=True,
        timeout=GDAL_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoHarness]:
    with MosquittoHarness(tmp_path) as b:
        yield b


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    pg: PgHarness = request.getfixturevalue("pg_server")
    return pg.create_database(f"ogcgdal{next(_db_names)}")


@pytest.fixture
async def served(
    tmp_path: Path, broker: MosquittoHarness, store_url: str
) -> AsyncIterator[tuple[str, dict[str, int], dict[str, str]]]:
    """The OAPIF data source name of a collector serving a seeded store, the request
    headers that authenticate to it (an admin token, and a city token under "city"), and
    the counts the store holds (read from a SQLite copy seeded the same way)."""
    store = await open_store(store_url)
    await seed(store)
    await store.close()
    reference = tmp_path / "reference.sqlite3"
    ref = await open_store(f"sqlite:///{reference}")
    await seed(ref)
    await ref.close()
    http_port = free_port()
    cfg = write_config(
        tmp_path / "collector.toml", mqtt_port=broker.port, http_port=http_port,
        store_url=store_url,
    )  # fmt: skip
    # The seed has two taxis on the same cells: k = 2 lets the city see them.
    with cfg.open("a") as f:
        f.write("\n[auth]\nk_anonymity = 2\n")
    collector = CollectorProcess(cfg, http_port, tmp_path / "collector.log")
    collector.start()
    try:
        city = {"city": mint_token(cfg, "gdal-city", role="city")}
        yield (
            f"OAPIF:http://127.0.0.1:{http_port}/ogc",
            counts(reference),
            collector.headers() | city,
        )
    finally:
        collector.kill()


def _feature_count(summary: str) -> int:
    found = re.search(r"^Feature Count: (\d+)$", summary, re.MULTILINE)
    assert found, summary
    return int(found.group(1))


def test_gdal_lists_filters_and_copies_the_collections(
    served: tuple[str, dict[str, int], dict[str, str]], tmp_path: Path
) -> None:
    source, expected, headers = served
    auth = {k: v for k, v in headers.items() if k != "city"}
    listing = gdal(auth, "ogrinfo", "-ro", "-so", source)
    for cid in COLLECTION_IDS:
        assert re.search(rf"^\d+: {re.escape(cid)}\b", listing, re.MULTILINE), listing

    whole = gdal(auth, "ogrinfo", "-ro", "-so", source, "events")
    assert _feature_count(whole) == expected["events"]
    # Seeded fixes step north from 37.5649; the box keeps the northern part only.
    box = ("-spat", "126.9", "37.5650", "127.1", "37.6")
    north = _feature_count(gdal(auth, "ogrinfo", "-ro", "-so", *box, source, "events"))
    assert 0 < north < expected["events"]

    gpkg = tmp_path / "out.gpkg"
    gdal(auth, "ogr2ogr", "-f", "GPKG", str(gpkg), source)
    with sqlite3.connect(gpkg) as con:
        tables = dict(con.execute("SELECT identifier, table_name FROM gpkg_contents").fetchall())
        for cid in COLLECTION_IDS:
            table = tables.get(cid) or cid.replace("-", "_")
            n = con.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
            assert n == expected[cid], (cid, n, expected)
    copied = gdal(auth, "ogrinfo", "-ro", "-so", str(gpkg), "road-conditions")
    assert "Geometry: Polygon" in copied
    assert _feature_count(copied) == expected["road-conditions"]


def test_gdal_pages_through_the_citys_events(
    served: tuple[str, dict[str, int], dict[str, str]], tmp_path: Path
) -> None:
    """The city's ids and sealed cursors: GDAL follows the next links page by page (two
    features a page) and gets every event the city may see once, with the same ids as
    one page of them all."""
    source, _, headers = served
    auth = {"Authorization": f"Bearer {headers['city']}"}
    base = source.removeprefix("OAPIF:")
    whole = httpx.get(f"{base}/collections/events/items", params={"limit": "1000"},
                      headers=auth, timeout=20).json()["features"]  # fmt: skip
    assert len(whole) > 2, "the seeded cells are k-anonymous at k = 2, more than a page"
    gpkg = tmp_path / "city.gpkg"
    gdal(auth, "ogr2ogr", "-f", "GPKG", "-oo", "PAGE_SIZE=2", str(gpkg), source, "events")
    with sqlite3.connect(gpkg) as con:
        ids = [r[0] for r in con.execute('SELECT "id" FROM events ORDER BY fid')]
    assert ids == [f["id"] for f in whole]
