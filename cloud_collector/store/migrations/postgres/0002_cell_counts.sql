-- Per-type event counts move into the cell-hour row, so that a road query is one range
-- scan of road_cells in (hour_ms, cell) order, without a join.
--   counts   - events per type of the cell-hour, a JSON object {"type": n, ...}
--   events_n - the sum of counts (the numerator of the hotspot rate)
ALTER TABLE road_cells
    ADD COLUMN counts JSONB NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN events_n BIGINT NOT NULL DEFAULT 0;
UPDATE road_cells c SET counts = e.counts, events_n = e.events_n
FROM (
    SELECT cell, hour_ms, jsonb_object_agg(type, n) AS counts, SUM(n)::bigint AS events_n
    FROM road_events GROUP BY cell, hour_ms
) e
WHERE c.cell = e.cell AND c.hour_ms = e.hour_ms;
DROP TABLE road_events;
-- The query index: hour range first, then the result order, with the static centre
-- columns for the bbox test. Only columns that never change are indexed, so the
-- incremental updates of ingest stay heap-only (HOT) updates; the spare room per page
-- lets them.
DROP INDEX road_cells_hour;
CREATE INDEX road_cells_hour_cell ON road_cells (hour_ms, cell) INCLUDE (lat, lon);
ALTER TABLE road_cells SET (fillfactor = 85);
