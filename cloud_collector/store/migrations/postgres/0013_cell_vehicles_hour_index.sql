-- Retention of ``road_cell_vehicles`` ([retention] cell_vehicles_days) deletes by
-- ``hour_ms < cut``; the primary key leads with ``vehicle``, so without an index by hour
-- every run read the whole table to find the few expired hours. With it the DELETE reads
-- only the expired entries. Ingest's inserts (a vehicle's first row for a cell-hour) keep
-- one more small index.
CREATE INDEX road_cell_vehicles_hour ON road_cell_vehicles (hour_ms);
