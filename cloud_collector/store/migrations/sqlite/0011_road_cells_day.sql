-- Per-day sums of the road cells, kept at ingest (cloud_collector/store/rollup.py): a
-- vector tile of whole UTC days reads one row per cell and day instead of the day's
-- cell-hours (a city-zoom tile of a day: ~5,000 rows instead of ~50,000).
--   day_ms           - the UTC day's start (ms); cell, lat, lon as in road_cells
--   passes .. events_n - the sums of the day's cell-hour rows (counts key by key)
--   k_hours, k_passes .. k_events_n - the same over the cell-hours with at least k
--                      vehicles only (the city's view): the day's sums must not let the
--                      city subtract the hours it sees from a total and learn an hour it
--                      may not see
-- road_cells_day_k.k - the k the k_* sums hold; NULL: not built (the city's tiles read
--                      the cell-hours). The collector builds them at start with its
--                      [auth] k_anonymity.
-- Filled here from the stored cell-hours (every hour's sums; the k_* ones wait for k).
-- WITHOUT ROWID, keyed by (day_ms, cell): a tile's day range is one range of the table
-- itself, with every column at hand (no lookup per row, as road_cells needs for its
-- sums).
CREATE TABLE road_cells_day (
    day_ms INTEGER NOT NULL, cell INTEGER NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
    passes INTEGER NOT NULL, wipers INTEGER NOT NULL, failsafe INTEGER NOT NULL,
    lanes INTEGER NOT NULL, speed_sum REAL NOT NULL, speed_n INTEGER NOT NULL,
    counts TEXT NOT NULL, events_n INTEGER NOT NULL,
    k_hours INTEGER NOT NULL DEFAULT 0, k_passes INTEGER NOT NULL DEFAULT 0,
    k_wipers INTEGER NOT NULL DEFAULT 0, k_failsafe INTEGER NOT NULL DEFAULT 0,
    k_lanes INTEGER NOT NULL DEFAULT 0, k_speed_sum REAL NOT NULL DEFAULT 0,
    k_speed_n INTEGER NOT NULL DEFAULT 0, k_counts TEXT NOT NULL DEFAULT '{}',
    k_events_n INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day_ms, cell)
) WITHOUT ROWID;
CREATE TABLE road_cells_day_k (one INTEGER PRIMARY KEY CHECK (one = 1), k INTEGER);
INSERT INTO road_cells_day_k (one, k) VALUES (1, NULL);
INSERT INTO road_cells_day (day_ms, cell, lat, lon, passes, wipers, failsafe, lanes,
    speed_sum, speed_n, counts, events_n)
SELECT s.day_ms, s.cell, s.lat, s.lon, s.passes, s.wipers, s.failsafe, s.lanes,
    s.speed_sum, s.speed_n, COALESCE(c.counts, '{}'), s.events_n
FROM (
    SELECT hour_ms - ((hour_ms % 86400000) + 86400000) % 86400000 AS day_ms, cell,
        MIN(lat) AS lat, MIN(lon) AS lon, SUM(passes) AS passes, SUM(wipers) AS wipers,
        SUM(failsafe) AS failsafe, SUM(lanes) AS lanes, SUM(speed_sum) AS speed_sum,
        SUM(speed_n) AS speed_n, SUM(events_n) AS events_n
    FROM road_cells GROUP BY 1, 2
) s
LEFT JOIN (
    SELECT day_ms, cell, json_group_object(key, n) AS counts
    FROM (
        SELECT hour_ms - ((hour_ms % 86400000) + 86400000) % 86400000 AS day_ms, cell,
            j.key AS key, SUM(j.value) AS n
        FROM road_cells, json_each(road_cells.counts) j GROUP BY 1, 2, 3
    ) t GROUP BY day_ms, cell
) c ON c.day_ms = s.day_ms AND c.cell = s.cell;
