"""geojson: rows to RFC 7946 features; times in ISO 8601 UTC with milliseconds."""

from __future__ import annotations

import itertools

import h3

from cloud_collector.geojson import (
    cell_polygon,
    event_feature,
    events_collection,
    iso_ms,
    road_collection,
    signs_collection,
    vehicle_json,
)
from cloud_collector.store.base import CellHour, SignCluster, StoredEvent, VehicleStatus


def _event(**kw: object) -> StoredEvent:
    base: dict[str, object] = {
        "id": 7,
        "time_ms": 1_772_436_619_055,
        "vehicle": "taxi-1",
        "fleet": "demo",
        "type": "ldw_left",
        "attrs": {"sound_code": 1, "type": "clash"},
        "lat": 37.56,
        "lon": 126.97,
        "h3_12": h3.str_to_int(h3.latlng_to_cell(37.56, 126.97, 12)),
        "speed_kmh": 60.01,
        "source_bus": "can0",
        "source_id": 0x700,
        "epoch": 2**64 - 1,
        "seq": 3,
    }
    base.update(kw)
    return StoredEvent(**base)  # type: ignore[arg-type]


def test_iso_ms() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1_772_436_619_055) == "2026-03-02T07:30:19.055Z"
    assert iso_ms(2**53 - 1).endswith("Z")


def test_event_feature() -> None:
    f = event_feature(_event())
    assert f["type"] == "Feature"
    assert f["geometry"] == {"type": "Point", "coordinates": [126.97, 37.56]}
    p = f["properties"]
    assert p["type"] == "ldw_left"
    assert p["time"] == "2026-03-02T07:30:19.055Z"
    assert p["vehicle"] == "taxi-1"
    assert p["speed_kmh"] == 60.01
    assert p["sound_code"] == 1
    assert p["attr_type"] == "clash"  # an attribute never overwrites a fixed property
    assert p["can_id"] == "0x700"


def test_event_without_fix_has_null_geometry() -> None:
    f = event_feature(_event(lat=None, lon=None, h3_12=None))
    assert f["geometry"] is None
    coll = events_collection([_event()], "abc")
    assert coll["type"] == "FeatureCollection"
    assert coll["next_cursor"] == "abc"


def _ring_area(ring: list[list[float]]) -> float:
    return sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in itertools.pairwise(ring)) / 2


def test_cell_polygon_closed_ccw_lonlat() -> None:
    cell = h3.str_to_int(h3.latlng_to_cell(37.56, 126.97, 10))
    poly = cell_polygon(cell)
    ring = poly["coordinates"][0]
    assert poly["type"] == "Polygon"
    assert ring[0] == ring[-1]
    assert len(ring) == 7
    assert _ring_area(ring) > 0  # counter-clockwise
    assert all(126.9 < lon < 127.1 and 37.5 < lat < 37.6 for lon, lat in ring)


def test_road_and_signs_and_vehicle() -> None:
    cell = h3.str_to_int(h3.latlng_to_cell(37.56, 126.97, 10))
    road = road_collection(
        [
            CellHour(
                cell=cell,
                hour_ms=1_772_434_800_000,
                lat=37.56,
                lon=126.97,
                counts={"fcw": 2},
                exposure=4,
                hotspot_rate=50.0,
                mean_speed_kmh=31.5,
                wipers_share=0.0,
                failsafe_share=None,
                lane_quality_share=1.0,
            )
        ]
    )
    props = road["features"][0]["properties"]
    assert props["h3"] == h3.int_to_str(cell)
    assert props["hour"] == "2026-03-02T07:00:00.000Z"
    assert props["exposure"] == 4
    signs = signs_collection(
        [
            SignCluster(
                id=1,
                sign_type=3,
                lat=37.5,
                lon=127.0,
                limit_kmh=50,
                observations=3,
                vehicles=2,
                first_seen_ms=0,
                last_seen_ms=1000,
            )
        ]
    )
    assert signs["features"][0]["geometry"]["coordinates"] == [127.0, 37.5]
    v = vehicle_json(
        VehicleStatus(
            vehicle="taxi-1",
            fleet="demo",
            online=True,
            presence_ms=0,
            last_seen_ms=1000,
            last_epoch=2**64 - 1,
            last_seq=9,
            lag_ms=20,
            day="1970-01-01",
            batches_today=9,
            bytes_today=900,
            batches_total=9,
            bytes_total=900,
            records_total=99,
            duplicates=1,
            quarantined=2,
        )
    )
    assert v["state"] == "online"
    assert v["last_epoch"] == str(2**64 - 1)
    assert v["last_seen"] == "1970-01-01T00:00:01.000Z"
