"""A streaming GeoParquet 1.1 writer: one Parquet file per layer, one row group per page
(pyarrow's ``ParquetWriter``), the geometry as WKB in a ``geometry`` column and the
``geo`` file metadata the specification asks for (OGC:CRS84, the default, so no ``crs``).

pyarrow comes with the collector's optional extra ``export``
(``pip install 'taxi-cloud-collector[export]'``); without it this module says so in one
line (``ExportError``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cloud_collector.export_layers import INT, REAL, TEXT, TIME, ExportError, Layer, Row

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

GEOMETRY: Final = "geometry"
GEOPARQUET_VERSION: Final = "1.1.0"


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ExportError(
            "GeoParquet needs pyarrow: pip install 'taxi-cloud-collector[export]'"
        ) from None
    return pyarrow, pyarrow.parquet


def geo_metadata(layer: Layer) -> dict[str, Any]:
    return {
        "version": GEOPARQUET_VERSION,
        "primary_column": GEOMETRY,
        "columns": {GEOMETRY: {"encoding": "WKB", "geometry_types": [layer.geometry_type]}},
    }


class GeoParquetWriter:
    """One layer to ``path``: ``write`` its pages, then ``close``."""

    def __init__(self, path: Path, layer: Layer) -> None:
        if path.exists():
            raise ExportError(f"{path} exists: not overwritten")
        pa_mod, pq_mod = _pyarrow()
        self._pa: Any = pa_mod
        types = {
            INT: pa_mod.int64(),
            REAL: pa_mod.float64(),
            TEXT: pa_mod.string(),
            TIME: pa_mod.timestamp("ms", tz="UTC"),
        }
        fields = [pa_mod.field(GEOMETRY, pa_mod.binary(), nullable=False)]
        fields += [pa_mod.field(name, types[kind]) for name, kind in layer.columns]
        meta = {b"geo": json.dumps(geo_metadata(layer)).encode()}
        self._schema: pa.Schema = pa_mod.schema(fields, metadata=meta)
        self._layer = layer
        self._writer: pq.ParquetWriter = pq_mod.ParquetWriter(
            path, self._schema, compression="zstd"
        )

    def write(self, rows: Iterable[Row]) -> None:
        page = list(rows)
        if not page:
            return
        columns: list[list[Any]] = [[r.wkb for r in page]]
        for i in range(len(self._layer.columns)):
            columns.append([r.values[i] for r in page])
        self._writer.write_table(self._pa.Table.from_arrays(columns, schema=self._schema))

    def close(self) -> None:
        self._writer.close()
