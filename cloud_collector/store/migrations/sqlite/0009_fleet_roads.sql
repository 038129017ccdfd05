-- The roads the fleet drove, for the offline basemap (vector tile layer "roads"): one row
-- per pair of neighbouring H3 res-12 cells a vehicle moved between from one GNSS fix to
-- the next (at most 10 s apart), kept up to date by ingest; the raw traces (gnss) may be
-- dropped by retention, this table stays.
--   a, b     - the two res-12 cells, a < b
--   lat, lon - a fix on the edge (the tile query's bbox test)
--   passes   - how often a vehicle drove it; last_ms - the latest fix time on it
-- Filled from the stored traces here. Events get a covering index for the tiles'
-- time range with a bbox (no heap visit per event).
CREATE TABLE fleet_roads (
    a INTEGER NOT NULL, b INTEGER NOT NULL, lat REAL NOT NULL,
    lon REAL NOT NULL, passes INTEGER NOT NULL, last_ms INTEGER NOT NULL,
    PRIMARY KEY (a, b)
);
INSERT INTO fleet_roads (a, b, lat, lon, passes, last_ms)
SELECT MIN(p, h3_12), MAX(p, h3_12), MIN(lat), MIN(lon), COUNT(*), MAX(time_ms)
FROM (
    SELECT h3_12, lat, lon, time_ms,
           LAG(h3_12) OVER w AS p, LAG(time_ms) OVER w AS pt
    FROM gnss WINDOW w AS (PARTITION BY vehicle ORDER BY time_ms)
) s
WHERE p IS NOT NULL AND p <> h3_12 AND time_ms - pt <= 10000
GROUP BY 1, 2;
CREATE INDEX fleet_roads_pos ON fleet_roads (lat, lon);
CREATE INDEX events_time_pos ON events (time_ms, lat, lon, type);
