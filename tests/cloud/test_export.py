"""``cloud-collector export``: a store with known rows to GeoPackage (read back with GDAL's
``ogrinfo`` and sqlite3) and GeoParquet (read back with pyarrow), written page by page;
the progress line on a terminal only; bad options are one line and exit 2."""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import struct
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest

from cloud_collector import cli, export
from cloud_collector.errors import StoreError
from cloud_collector.store import Store, open_store
from cloud_collector.store.base import EventPage, EventQuery, Queries
from harness.collector import T0
from tests.support.feature_store import counts, seed


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "store.sqlite3"
    store = await open_store(f"sqlite:///{path}")
    await seed(store)
    await store.close()
    return path


@pytest.fixture
def config(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(f'[store]\nurl = "sqlite:///{db}"\n')
    return path


def _located(db: Path, where: str = "1 = 1", *args: object) -> list[tuple[int, float, float]]:
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT id, lon, lat FROM events WHERE lat IS NOT NULL AND " + where + " ORDER BY id",
            args,
        ).fetchall()
    return [(int(i), float(x), float(y)) for i, x, y in rows]


def test_geopackage_has_both_layers_with_the_stores_rows(
    config: Path, db: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.gpkg"
    assert cli.main(["export", "--config", str(config), "--format", "geopackage",
                     "--out", str(out)]) == 0  # fmt: skip
    expected = counts(db)
    with sqlite3.connect(out) as con:
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
        n_events = con.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        n_cells = con.execute("SELECT COUNT(*) FROM road_conditions").fetchone()[0]
        blob, event_id, attrs = con.execute(
            "SELECT geom, event_id, attrs FROM events ORDER BY event_id LIMIT 1"
        ).fetchone()
    assert (n_events, n_cells) == (expected["events"], expected["road-conditions"])
    first = _located(db)[0]
    assert event_id == first[0]
    assert struct.unpack_from("<dd", blob, 8 + 32 + 5) == (first[1], first[2])
    assert "vehicle" not in json.loads(attrs)
    if shutil.which("ogrinfo") is None:
        pytest.skip("gdal-bin is not installed")
    for layer, kind, n in (("events", "Point", n_events), ("road_conditions", "Polygon", n_cells)):
        info = subprocess.run(
            ["ogrinfo", "-ro", "-so", str(out), layer],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        assert f"Geometry: {kind}" in info
        assert re.search(rf"^Feature Count: {n}$", info, re.MULTILINE), info


def test_geoparquet_streams_pages_with_geo_metadata(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    monkeypatch.setattr(export, "PAGE", 4)  # several pages, so several row groups
    out = tmp_path / "parquet"
    since = T0 + 30_000
    span = export.parse_span("geoparquet", "2026-03-02T07:30:30Z", None)
    written = export.asyncio_run(f"sqlite:///{db}", "geoparquet", out, span)
    located = _located(db, "time_ms >= ?", since)
    assert written["events"] == len(located)
    events = pq.ParquetFile(out / "events.parquet")
    assert events.metadata.num_rows == len(located)
    assert events.metadata.num_row_groups == -(-len(located) // 4)
    geo = json.loads(events.schema_arrow.metadata[b"geo"])
    assert geo["version"] == "1.1.0"
    assert geo["columns"]["geometry"] == {"encoding": "WKB", "geometry_types": ["Point"]}
    table = events.read()
    assert sorted(table.column("event_id").to_pylist()) == [i for i, _, _ in located]
    wkb = table.column("geometry")[0].as_py()
    assert struct.unpack("<BIdd", wkb)[2:] == next(
        (x, y) for i, x, y in located if i == table.column("event_id")[0].as_py()
    )
    cells = pq.read_table(out / "road_conditions.parquet")
    assert cells.num_rows == counts(db)["road-conditions"]
    assert cells.column("geometry")[0].as_py()[:5] == b"\x01\x03\x00\x00\x00"


async def test_progress_on_a_terminal_only(db: Path, tmp_path: Path) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    store = await open_store(f"sqlite:///{db}")
    try:
        tty, pipe = Tty(), io.StringIO()
        span = export.Span(None, None)
        await export.export(store, "geopackage", tmp_path / "a.gpkg", span, tty)
        await export.export(store, "geopackage", tmp_path / "b.gpkg", span, pipe)
    finally:
        await store.close()
    assert pipe.getvalue() == ""
    assert "\rexport events: 19 rows [####################] 100%" in tty.getvalue()
    assert "\rexport road_conditions: 5 rows" in tty.getvalue()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--format", "csv"], "--format: one of geoparquet, geopackage, not 'csv'"),
        (["--format", "geopackage", "--since", "yesterday"], "--since: 'yesterday' is not"),
        (["--format", "geopackage", "--until", "2026-13-01"], "--until: '2026-13-01' is not"),
        (["--format", "geopackage", "--since", "1969-01-01T00:00:00Z"], "--since: "),
        (
            ["--format", "geopackage", "--since", "2026-03-02", "--until", "2026-03-01"],
            "--since: after --until",
        ),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], reason: str
) -> None:
    out = tmp_path / "never"
    code = cli.main(["export", "--config", str(config), "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"cloud-collector export: {reason}")
    assert err.count("\n") == 1
    assert not out.exists()


class _GoesAway:
    """The real store, closed under the export as it asks for its second events page."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pages = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def events(self, q: EventQuery) -> EventPage:
        self.pages += 1
        if self.pages == 2:
            await self.store.close()
        return await self.store.events(q)


def _beside(tmp_path: Path) -> set[str]:
    """The names in ``tmp_path`` but the store's own (its WAL files come and go)."""
    return {p.name for p in tmp_path.iterdir() if not p.name.startswith("store.sqlite3")}


@pytest.mark.parametrize("fmt", export.FORMATS)
async def test_an_export_failing_midway_leaves_nothing_at_out(
    db: Path, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if fmt == "geoparquet":
        pytest.importorskip("pyarrow")
    monkeypatch.setattr(export, "PAGE", 1)  # several pages: the first is written
    before = _beside(tmp_path)
    out = tmp_path / ("out.gpkg" if fmt == "geopackage" else "out")
    store = _GoesAway(await open_store(f"sqlite:///{db}"))
    with pytest.raises(StoreError, match="connection lost"):
        await export.export(
            cast("Queries", store), fmt, out, export.Span(None, None), io.StringIO()
        )
    assert store.pages == 2
    assert _beside(tmp_path) == before  # no out, no partial file beside it
    # The same export on the store back: complete, at out.
    reopened = await open_store(f"sqlite:///{db}")
    try:
        written = await export.export(reopened, fmt, out, export.Span(None, None), io.StringIO())
    finally:
        await reopened.close()
    assert written["events"] == counts(db)["events"]
    assert _beside(tmp_path) == before | {out.name}
