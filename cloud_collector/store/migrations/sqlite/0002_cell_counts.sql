-- Per-type event counts move into the cell-hour row, so that a road query is one range
-- scan of road_cells in (hour_ms, cell) order, without a join.
--   counts   - events per type of the cell-hour, a JSON object {"type": n, ...}
--   events_n - the sum of counts (the numerator of the hotspot rate)
ALTER TABLE road_cells ADD COLUMN counts TEXT NOT NULL DEFAULT '{}';
ALTER TABLE road_cells ADD COLUMN events_n INTEGER NOT NULL DEFAULT 0;
UPDATE road_cells SET
    counts = (
        SELECT json_group_object(e.type, e.n) FROM road_events e
        WHERE e.cell = road_cells.cell AND e.hour_ms = road_cells.hour_ms
    ),
    events_n = (
        SELECT SUM(e.n) FROM road_events e
        WHERE e.cell = road_cells.cell AND e.hour_ms = road_cells.hour_ms
    )
WHERE EXISTS (
    SELECT 1 FROM road_events e WHERE e.cell = road_cells.cell AND e.hour_ms = road_cells.hour_ms
);
DROP TABLE road_events;
DROP INDEX road_cells_hour;
CREATE INDEX road_cells_hour_cell ON road_cells (hour_ms, cell, lat, lon);
