-- Per-vehicle health state for the alerts and the fleet view, kept up to date by ingest
-- so that reading it costs one row per vehicle (no scan of the health or receipts history).
--   health_latest        - the health snapshot with the latest record time per vehicle
--   epoch_acks.max_seq   - the highest seq received in the epoch (new or quarantined)
--   epoch_acks.received  - distinct seqs received in the epoch; max_seq - received is the
--                          number of missing seqs
--   vehicle_status.rx_*  - payload bytes received on the batch channels (new, duplicate
--                          and quarantined-with-identity), per UTC day and UTC month
CREATE TABLE health_latest (
    vehicle TEXT PRIMARY KEY, time_ms INTEGER NOT NULL, "values" TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO health_latest (vehicle, time_ms, "values")
SELECT h.vehicle, h.time_ms, MAX(h."values") FROM health h
WHERE h.time_ms = (SELECT MAX(time_ms) FROM health WHERE vehicle = h.vehicle)
GROUP BY h.vehicle, h.time_ms;
ALTER TABLE epoch_acks ADD COLUMN max_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE epoch_acks ADD COLUMN received INTEGER NOT NULL DEFAULT 0;
UPDATE epoch_acks SET
    max_seq = COALESCE((SELECT MAX(seq) FROM receipts r
        WHERE r.vehicle = epoch_acks.vehicle AND r.epoch = epoch_acks.epoch), 0),
    received = (SELECT COUNT(*) FROM receipts r
        WHERE r.vehicle = epoch_acks.vehicle AND r.epoch = epoch_acks.epoch);
ALTER TABLE vehicle_status ADD COLUMN rx_day TEXT;
ALTER TABLE vehicle_status ADD COLUMN rx_bytes_today INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vehicle_status ADD COLUMN rx_month TEXT;
ALTER TABLE vehicle_status ADD COLUMN rx_bytes_month INTEGER NOT NULL DEFAULT 0;
-- Before this migration only new batches' bytes were counted: a lower bound.
UPDATE vehicle_status SET rx_day = day, rx_bytes_today = bytes_today,
    rx_month = substr(day, 1, 7), rx_bytes_month = bytes_today WHERE day IS NOT NULL;
