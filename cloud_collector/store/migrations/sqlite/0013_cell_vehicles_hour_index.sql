-- Retention of ``road_cell_vehicles`` ([retention] cell_vehicles_days) deletes in batches
-- of the keys with ``hour_ms < cut``; the primary key leads with ``vehicle``, so without
-- an index by hour each batch scanned the table (again, from its start) for expired rows.
-- With it each batch is a range of this index.
CREATE INDEX road_cell_vehicles_hour ON road_cell_vehicles (hour_ms);
