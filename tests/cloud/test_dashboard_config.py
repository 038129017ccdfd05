"""The dashboard's map settings: ``[dashboard]`` of the configuration, handed to the page
by ``GET /dashboard/config.json``; and the committed bundle carries MapLibre's worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from cloud_collector.api import create_app
from cloud_collector.config import DashboardConfig, load_config
from cloud_collector.dashboard import STATIC
from cloud_collector.errors import ConfigError
from cloud_collector.store import open_store


@asynccontextmanager
async def _client(tmp_path: Path, cfg: DashboardConfig | None) -> AsyncIterator[httpx.AsyncClient]:
    store = await open_store(f"sqlite:///{tmp_path / 'dash.sqlite3'}")
    try:
        app = create_app(store, dashboard=cfg)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c
    finally:
        await store.close()


async def test_without_a_basemap_the_page_is_told_none(tmp_path: Path) -> None:
    async with _client(tmp_path, None) as c:
        r = await c.get("/dashboard/config.json")
    assert r.status_code == 200
    assert r.json() == {"basemap": None}


async def test_a_configured_basemap_reaches_the_page(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[dashboard]\n"
        'basemap_tiles = "https://tiles.example/{z}/{x}/{y}.png"\n'
        'basemap_attribution = "© the tile server"\n'
        "basemap_max_zoom = 17\n",
        encoding="utf-8",
    )
    cfg = load_config(path).dashboard
    async with _client(tmp_path, cfg) as c:
        body = (await c.get("/dashboard/config.json")).json()
    assert body == {
        "basemap": {
            "tiles": ["https://tiles.example/{z}/{x}/{y}.png"],
            "attribution": "© the tile server",
            "maxzoom": 17,
        }
    }


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('basemap_tiles = "https://t.example/{z}/{x}.png"', "lacks {y}"),
        ('basemap_tiles = "https://t.example/tiles.png"', "lacks {z}, {x}, {y}"),
        ('basemap_tiles = "ftp://t.example/{z}/{x}/{y}"', "not an http(s) URL template"),
        ('basemap_tiles = "tiles/{z}/{x}/{y}.png"', "not an http(s) URL template"),
        ("basemap_tiles = 5", "valid string"),
        ("basemap_max_zoom = 30", "less than or equal to 24"),
        ('basemap_tile = "/t/{z}/{x}/{y}.png"', "did you mean 'basemap_tiles'?"),
    ],
)
def test_bad_dashboard_keys_are_named(tmp_path: Path, line: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f"[dashboard]\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    key = line.split(" =", 1)[0]
    assert message.startswith(f"{path}: key 'dashboard.{key}'"), message
    assert expected in message, message
    assert "\n" not in message


def test_the_bundle_carries_maplibre_and_its_worker() -> None:
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    assert "static/main.js" in page
    assert "http" not in page  # nothing from elsewhere: every asset under static/
    assert (STATIC / "maplibre-gl-worker.js").stat().st_size > 100_000
    assert ".maplibregl-map" in (STATIC / "style.css").read_text(encoding="utf-8")
