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
-- Updated in place by ingest: the primary key holds only columns that never change, so
-- the updates stay heap-only (HOT) with the spare room per page.
CREATE TABLE road_cells_day (
    day_ms BIGINT NOT NULL, cell BIGINT NOT NULL,
    lat DOUBLE PRECISION NOT NULL, lon DOUBLE PRECISION NOT NULL,
    passes BIGINT NOT NULL, wipers BIGINT NOT NULL, failsafe BIGINT NOT NULL,
    lanes BIGINT NOT NULL, speed_sum DOUBLE PRECISION NOT NULL, speed_n BIGINT NOT NULL,
    counts JSONB NOT NULL, events_n BIGINT NOT NULL,
    k_hours BIGINT NOT NULL DEFAULT 0, k_passes BIGINT NOT NULL DEFAULT 0,
    k_wipers BIGINT NOT NULL DEFAULT 0, k_failsafe BIGINT NOT NULL DEFAULT 0,
    k_lanes BIGINT NOT NULL DEFAULT 0, k_speed_sum DOUBLE PRECISION NOT NULL DEFAULT 0,
    k_speed_n BIGINT NOT NULL DEFAULT 0, k_counts JSONB NOT NULL DEFAULT '{}'::jsonb,
    k_events_n BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day_ms, cell)
) WITH (fillfactor = 85);
CREATE TABLE road_cells_day_k (one INTEGER PRIMARY KEY CHECK (one = 1), k INTEGER);
INSERT INTO road_cells_day_k (one, k) VALUES (1, NULL);
INSERT INTO road_cells_day (day_ms, cell, lat, lon, passes, wipers, failsafe, lanes,
    speed_sum, speed_n, counts, events_n)
SELECT s.day_ms, s.cell, s.lat, s.lon, s.passes, s.wipers, s.failsafe, s.lanes,
    s.speed_sum, s.speed_n, COALESCE(c.counts, '{}'::jsonb), s.events_n
FROM (
    SELECT hour_ms - ((hour_ms % 86400000) + 86400000) % 86400000 AS day_ms, cell,
        MIN(lat) AS lat, MIN(lon) AS lon, SUM(passes) AS passes, SUM(wipers) AS wipers,
        SUM(failsafe) AS failsafe, SUM(lanes) AS lanes, SUM(speed_sum) AS speed_sum,
        SUM(speed_n) AS speed_n, SUM(events_n) AS events_n
    FROM road_cells GROUP BY 1, 2
) s
LEFT JOIN (
    SELECT day_ms, cell, jsonb_object_agg(key, n) AS counts
    FROM (
        SELECT hour_ms - ((hour_ms % 86400000) + 86400000) % 86400000 AS day_ms, cell,
            j.key, SUM(j.value::bigint) AS n
        FROM road_cells, jsonb_each_text(counts) j GROUP BY 1, 2, 3
    ) t GROUP BY day_ms, cell
) c ON c.day_ms = s.day_ms AND c.cell = s.cell
-- In day order, as ingest writes them: a tile's day is then a few hundred pages of the
-- table, not one page per row.
ORDER BY s.day_ms, s.cell;
