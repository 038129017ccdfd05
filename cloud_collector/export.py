"""``cloud-collector export``: events and road conditions for offline analysis (DuckDB,
pandas, QGIS), as GeoParquet (a directory with ``events.parquet`` and
``road_conditions.parquet``) or GeoPackage (one file, two layers).

Streaming: the store is read in keyset pages of ``PAGE`` rows (``Queries.events`` and
``Queries.cell_page``) and each page is written before the next is read, so memory does
not grow with the store. On a terminal a progress line shows rows written and how far
through the exported time span the export is; otherwise it is silent.

Times: an event is exported when ``since <= time < until``, a cell-hour when its hour
meets [since, until) (the OGC API's ``datetime`` rule).

All or nothing: the export is written under a hidden name beside ``--out`` and renamed
to it once complete; an export that fails midway (the store gone, the disk full)
removes what it wrote, so a file or directory at ``--out`` is always a whole export.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Protocol, TextIO

from cloud_collector.export_layers import (
    EVENTS_LAYER,
    ROAD_LAYER,
    ExportError,
    Layer,
    Row,
    event_row,
    road_row,
)
from cloud_collector.geoparquet import GeoParquetWriter
from cloud_collector.gpkg import GeoPackageWriter
from cloud_collector.store import open_store
from cloud_collector.store.aggregate import HOUR_MS
from cloud_collector.store.base import (
    EVENTS_COLLECTION,
    MAX_EVENT_LIMIT,
    ROAD_COLLECTION,
    EventQuery,
    FeatureQuery,
    Queries,
)

PAGE: Final = MAX_EVENT_LIMIT
FORMATS: Final = ("geoparquet", "geopackage")
WORLD: Final = (-180.0, -90.0, 180.0, 90.0)
DESCRIPTIONS: Final = {
    EVENTS_LAYER.name: "Located ADAS events (no vehicle ids)",
    ROAD_LAYER.name: "Road conditions per H3 resolution-10 cell and hour",
}


@dataclass(frozen=True, slots=True)
class Span:
    since_ms: int | None
    until_ms: int | None


class Progress:
    """A carriage-return line on a terminal: rows written per layer and the share of the
    time span done; nothing when ``stream`` is not a terminal."""

    def __init__(self, stream: TextIO, total_ms: tuple[int, int] | None) -> None:
        self._stream = stream
        self._on = stream.isatty()
        self._span = total_ms

    def show(self, layer: str, rows: int, at_ms: int | None) -> None:
        if not self._on:
            return
        share = ""
        if self._span is not None and at_ms is not None:
            first, last = self._span
            done = 1.0 if last <= first else (at_ms - first) / (last - first)
            filled = round(max(0.0, min(done, 1.0)) * 20)
            share = f" [{'#' * filled}{'.' * (20 - filled)}] {max(0.0, min(done, 1.0)):4.0%}"
        self._stream.write(f"\rexport {layer}: {rows:,} rows{share}   ")
        self._stream.flush()

    def done(self) -> None:
        if self._on:
            self._stream.write("\n")
            self._stream.flush()


async def event_pages(queries: Queries, span: Span) -> AsyncIterator[tuple[list[Row], int]]:
    """Pages of event rows with the time of each page's last event."""
    cursor: str | None = None
    while True:
        page = await queries.events(
            EventQuery(
                since_ms=span.since_ms, until_ms=span.until_ms, bbox=WORLD, limit=PAGE,
                cursor=cursor,
            )
        )  # fmt: skip
        if page.events:
            yield [event_row(e) for e in page.events], page.events[-1].time_ms
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


async def road_pages(queries: Queries, span: Span) -> AsyncIterator[tuple[list[Row], int]]:
    after: tuple[int, int] | None = None
    while True:
        page = await queries.cell_page(
            FeatureQuery(since_ms=span.since_ms, until_ms=span.until_ms, limit=PAGE, after=after)
        )
        if page.cells:
            yield [road_row(c) for c in page.cells], page.cells[-1].hour_ms
        if page.next_after is None:
            return
        after = page.next_after


class Sink(Protocol):
    def open(self, layer: Layer) -> Callable[[list[Row]], None]: ...

    def close(self) -> None: ...


class GeoPackageSink:
    def __init__(self, out: Path) -> None:
        self._writer = GeoPackageWriter(out)

    def open(self, layer: Layer) -> Callable[[list[Row]], None]:
        self._writer.add_layer(layer, DESCRIPTIONS[layer.name])
        return lambda rows: self._writer.write(layer, rows)

    def close(self) -> None:
        self._writer.close()


class GeoParquetSink:
    def __init__(self, out: Path) -> None:
        if out.exists() and any(out.iterdir()):
            raise ExportError(f"{out} is not an empty directory: not overwritten")
        out.mkdir(parents=True, exist_ok=True)
        self._out = out
        self._writers: list[GeoParquetWriter] = []

    def open(self, layer: Layer) -> Callable[[list[Row]], None]:
        writer = GeoParquetWriter(self._out / f"{layer.name}.parquet", layer)
        self._writers.append(writer)
        return writer.write

    def close(self) -> None:
        for writer in self._writers:
            writer.close()


def _check_target(fmt: str, out: Path) -> None:
    """An export never replaces anything: a GeoPackage file must not exist, a GeoParquet
    directory must not exist or be empty."""
    if fmt == "geoparquet":
        if out.exists() and not (out.is_dir() and not any(out.iterdir())):
            raise ExportError(f"{out} is not an empty directory: not overwritten")
    elif out.exists() or out.is_symlink():
        raise ExportError(f"{out} exists: not overwritten")


def _staging(out: Path) -> Path:
    """A hidden name beside ``out`` (same directory, so the final rename is atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.parent / f".{out.name}.{secrets.token_hex(6)}.partial"


def _discard(staged: Path) -> None:
    if staged.is_dir():
        shutil.rmtree(staged, ignore_errors=True)
    for leftover in (staged, Path(f"{staged}-journal"), Path(f"{staged}-wal")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def _publish(staged: Path, out: Path) -> None:
    """``staged`` becomes ``out``; never over something that appeared there meanwhile
    (a file: a hard link fails on an existing name; a directory: rename replaces only an
    empty one)."""
    try:
        if staged.is_dir():
            staged.rename(out)
        else:
            os.link(staged, out)
            staged.unlink()
    except OSError as exc:
        raise ExportError(f"{out}: cannot put the export there: {exc.strerror}") from exc


def open_sink(fmt: str, out: Path) -> Sink:
    if fmt == "geopackage":
        return GeoPackageSink(out)
    if fmt == "geoparquet":
        return GeoParquetSink(out)
    raise ExportError(f"--format: one of {', '.join(FORMATS)}, not {fmt!r}")


def _clip(
    extent: tuple[int | None, int | None], span: Span, last_pad: int = 0
) -> tuple[int, int] | None:
    first, last = extent
    if first is None or last is None:
        return None
    lo = first if span.since_ms is None else max(first, span.since_ms)
    hi = last + last_pad if span.until_ms is None else min(last + last_pad, span.until_ms)
    return lo, hi


async def export(
    queries: Queries, fmt: str, out: Path, span: Span, stream: TextIO = sys.stdout
) -> dict[str, int]:
    """Write both layers to ``out`` (all or nothing); the rows written per layer."""
    if fmt not in FORMATS:
        raise ExportError(f"--format: one of {', '.join(FORMATS)}, not {fmt!r}")
    _check_target(fmt, out)
    staged = _staging(out)
    try:
        written = await _write(queries, open_sink(fmt, staged), span, stream)
        _publish(staged, out)
    except BaseException:
        _discard(staged)
        raise
    return written


async def _write(queries: Queries, sink: Sink, span: Span, stream: TextIO) -> dict[str, int]:
    written: dict[str, int] = {}
    try:
        extents = await queries.extents()
        jobs = (
            (EVENTS_LAYER, event_pages, EVENTS_COLLECTION, 0),
            (ROAD_LAYER, road_pages, ROAD_COLLECTION, HOUR_MS),
        )
        for layer, pages, cid, pad in jobs:
            ext = extents[cid]
            progress = Progress(stream, _clip((ext.first_ms, ext.last_ms), span, pad))
            write = sink.open(layer)
            n = 0
            async for rows, at_ms in pages(queries, span):
                write(rows)
                n += len(rows)
                progress.show(layer.name, n, at_ms)
            progress.show(layer.name, n, None)
            progress.done()
            written[layer.name] = n
    finally:
        sink.close()
    return written


def parse_span(fmt: str, since: str | None, until: str | None) -> Span:
    """The command line's format and times; ``ValueError`` naming the option."""
    if fmt not in FORMATS:
        raise ValueError(f"--format: one of {', '.join(FORMATS)}, not {fmt!r}")
    bounds = []
    for option, text in (("--since", since), ("--until", until)):
        try:
            bounds.append(None if text is None else iso_to_ms(text))
        except ValueError as exc:
            raise ValueError(f"{option}: {exc}") from None
    since_ms, until_ms = bounds
    if since_ms is not None and until_ms is not None and since_ms > until_ms:
        raise ValueError("--since: after --until")
    return Span(since_ms, until_ms)


def iso_to_ms(text: str) -> int:
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time (2026-03-02T07:30:00Z)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ms = (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    if ms < 0:
        raise ValueError(f"{text!r} is before 1970")
    return ms


async def run(store_url: str, fmt: str, out: Path, span: Span) -> dict[str, int]:
    """Open the store at ``store_url``, export, close."""
    store = await open_store(store_url)
    try:
        return await export(store, fmt, out, span)
    finally:
        await store.close()


def asyncio_run(store_url: str, fmt: str, out: Path, span: Span) -> dict[str, int]:
    """``run`` on a new event loop (the command line's entry)."""
    return asyncio.run(run(store_url, fmt, out, span))
