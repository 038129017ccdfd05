"""A streaming GeoPackage (OGC 12-128r18, version 1.3) feature writer on the standard
library's sqlite3: the core tables, one feature table per layer, geometries as GeoPackage
binary (header and envelope, then WKB), WGS 84 (EPSG:4326, longitude as x).

Written by hand rather than through GDAL's Python bindings (they need the matching
libgdal), fiona or pyogrio (wheels bundling all of GDAL, tens of MB): the collector host
needs only these few tables, and GDAL reads the result (tests check it with ``ogrinfo``).
Rows go in page by page, each page one transaction, so memory stays bounded. No spatial
index (an R-tree): GDAL and QGIS read the file without one, and can add it.
"""

from __future__ import annotations

import sqlite3
import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from cloud_collector.export_layers import INT, REAL, TEXT, TIME, Box, ExportError, Layer, Row

APPLICATION_ID: Final = 0x47504B47  # "GPKG"
USER_VERSION: Final = 10300  # 1.3.0
SRS_ID: Final = 4326
WGS84_WKT: Final = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,'
    'AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,'
    'AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],'
    'AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]'
)
_SQL_TYPES: Final = {INT: "INTEGER", REAL: "REAL", TEXT: "TEXT", TIME: "DATETIME"}
_CORE: Final = (
    """CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY,
    organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL,
    definition TEXT NOT NULL, description TEXT)""",
    """CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY,
    data_type TEXT NOT NULL, identifier TEXT UNIQUE, description TEXT DEFAULT '',
    last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
    CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id))""",
    """CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL,
    column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL,
    z TINYINT NOT NULL, m TINYINT NOT NULL,
    CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
    CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
    CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id))""",
)


def geometry_blob(row: Row) -> bytes:
    """GeoPackage binary: magic, version 0, flags (little-endian, envelope [minx, maxx,
    miny, maxy]), the SRS id, the envelope, then the WKB."""
    min_x, min_y, max_x, max_y = row.box
    header = struct.pack("<2sBBi4d", b"GP", 0, 0b0000_0011, SRS_ID, min_x, max_x, min_y, max_y)
    return header + row.wkb


def _iso(ms: int) -> str:
    secs, milli = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{milli:03d}Z"


class GeoPackageWriter:
    """``open`` a new file, ``add_layer`` each layer, ``write`` its pages, ``close``."""

    def __init__(self, path: Path) -> None:
        if path.exists():
            raise ExportError(f"{path} exists: not overwritten")
        self._con = sqlite3.connect(path, isolation_level=None)
        self._boxes: dict[str, Box] = {}
        self._con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        self._con.execute(f"PRAGMA user_version = {USER_VERSION}")
        self._con.execute("BEGIN")
        for ddl in _CORE:
            self._con.execute(ddl)
        self._con.executemany(
            "INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", None),
                ("Undefined geographic SRS", 0, "NONE", 0, "undefined", None),
                ("WGS 84 geodetic", SRS_ID, "EPSG", SRS_ID, WGS84_WKT, "longitude/latitude"),
            ],
        )
        self._con.execute("COMMIT")

    def add_layer(self, layer: Layer, description: str) -> None:
        columns = "".join(f', "{n}" {_SQL_TYPES[k]}' for n, k in layer.columns)
        self._con.execute("BEGIN")
        self._con.execute(
            f'CREATE TABLE "{layer.name}" (fid INTEGER PRIMARY KEY AUTOINCREMENT,'
            f" geom {layer.geometry_type.upper()}{columns})"
        )
        self._con.execute(
            "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, srs_id)"
            " VALUES (?, 'features', ?, ?, ?)",
            (layer.name, layer.name, description, SRS_ID),
        )
        self._con.execute(
            "INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', ?, ?, 0, 0)",
            (layer.name, layer.geometry_type.upper(), SRS_ID),
        )
        self._con.execute("COMMIT")

    def write(self, layer: Layer, rows: Iterable[Row]) -> None:
        times = [i for i, (_, kind) in enumerate(layer.columns) if kind == TIME]
        marks = ", ".join("?" * (len(layer.columns) + 1))
        names = "".join(f', "{n}"' for n, _ in layer.columns)
        batch = []
        box = self._boxes.get(layer.name)
        for row in rows:
            values = list(row.values)
            for i in times:
                v = values[i]
                values[i] = None if v is None else _iso(int(v))
            batch.append((geometry_blob(row), *values))
            box = row.box if box is None else _union(box, row.box)
        if box is not None:
            self._boxes[layer.name] = box
        self._con.execute("BEGIN")
        self._con.executemany(f'INSERT INTO "{layer.name}" (geom{names}) VALUES ({marks})', batch)
        self._con.execute("COMMIT")

    def close(self) -> None:
        """Record each layer's extent, then close the file."""
        self._con.execute("BEGIN")
        for name, (min_x, min_y, max_x, max_y) in self._boxes.items():
            self._con.execute(
                "UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ?"
                " WHERE table_name = ?",
                (min_x, min_y, max_x, max_y, name),
            )
        self._con.execute("COMMIT")
        self._con.close()


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
