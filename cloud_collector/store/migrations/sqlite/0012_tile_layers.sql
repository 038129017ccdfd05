-- The roads the fleet drove, grouped per coarse resolution (vector tile layer "roads" at
-- zooms 0-13, cloud_collector/store/roads.py): one row per pair of neighbouring H3 res-r
-- cells (r = 3..11, tiles.road_res below the stored 12) whose res-12 child cells an edge
-- of fleet_roads joins; kept up to date by ingest beside fleet_roads. A zoom-11 tile
-- reads its ~1,000 rows of one resolution from the position index instead of grouping
-- the ~130,000 stored edges of its box per request.
--   res      - the resolution of a and b
--   a, b     - the two res-r parents, a < b
--   lat, lon - a fix on one of the child edges (the tile query's bbox test)
--   passes   - the sum of the child edges' passes
-- Filled from fleet_roads here: a parent is the child's H3 index with the resolution
-- field set and the finer digits set to 7 (the (keep, fill) bit masks per resolution).
CREATE TABLE fleet_road_rollup (
    res INTEGER NOT NULL, a INTEGER NOT NULL, b INTEGER NOT NULL, lat REAL NOT NULL,
    lon REAL NOT NULL, passes INTEGER NOT NULL,
    PRIMARY KEY (res, a, b)
);
WITH r (res, keep, fill) AS (VALUES
    (3, 9155817973724741632, 13510867601588223),
    (4, 9155818033854283776, 18014407099416575),
    (5, 9155818041370476544, 22517999210594303),
    (6, 9155818042310000640, 27021597898440703),
    (7, 9155818042427441152, 31525197408370687),
    (8, 9155818042442121216, 36028797021061119),
    (9, 9155818042443956224, 40532396646596607),
    (10, 9155818042444185600, 45035996273737727),
    (11, 9155818042444214272, 49539595901079551))
INSERT INTO fleet_road_rollup (res, a, b, lat, lon, passes)
SELECT res, MIN(pa, pb), MAX(pa, pb), MIN(lat), MIN(lon), SUM(passes)
FROM (
    SELECT r.res, (f.a & r.keep) | r.fill AS pa, (f.b & r.keep) | r.fill AS pb,
           f.lat, f.lon, f.passes
    FROM fleet_roads f CROSS JOIN r
) s
WHERE pa <> pb
GROUP BY 1, 2, 3;
CREATE INDEX fleet_road_rollup_pos ON fleet_road_rollup (res, lat, lon, a, b, passes);
-- A vector tile's events by place, then time (reads.tile_events, layer "events"): the
-- res-8 parent of h3_12 (the same bit masks, res 8) and the time, so a small tile reads
-- its cells' events of the period only, instead of every event of the period newest
-- first until enough fall in its box; lat, lon, type and h3_12 (the city's k test)
-- beside them, so no row is fetched.
CREATE INDEX events_cell_time ON events
    (((h3_12 & 9155818042442121216) | 36028797021061119), time_ms, lat, lon, type, h3_12);
-- The time index of the larger tiles gets h3_12 as well: the city's view of them (the k
-- test of each event's cell-hour) then reads no table row per event of the period.
DROP INDEX events_time_pos;
CREATE INDEX events_time_pos ON events (time_ms, lat, lon, type, h3_12);
