-- Per-vehicle health state for the alerts and the fleet view, kept up to date by ingest
-- so that reading it costs one row per vehicle (no scan of the health or receipts history).
--   health_latest        - the health snapshot with the latest record time per vehicle
--   epoch_acks.max_seq   - the highest seq received in the epoch (new or quarantined)
--   epoch_acks.received  - distinct seqs received in the epoch; max_seq - received is the
--                          number of missing seqs
--   vehicle_status.rx_*  - payload bytes received on the batch channels (new, duplicate
--                          and quarantined-with-identity), per UTC day and UTC month
CREATE TABLE health_latest (
    vehicle TEXT PRIMARY KEY, time_ms BIGINT NOT NULL, "values" JSONB NOT NULL
);
INSERT INTO health_latest (vehicle, time_ms, "values")
SELECT DISTINCT ON (vehicle) vehicle, time_ms, "values" FROM health
ORDER BY vehicle, time_ms DESC;
ALTER TABLE epoch_acks
    ADD COLUMN max_seq BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN received BIGINT NOT NULL DEFAULT 0;
UPDATE epoch_acks a SET max_seq = r.max_seq, received = r.n
FROM (
    SELECT vehicle, epoch, MAX(seq) AS max_seq, COUNT(*) AS n FROM receipts
    GROUP BY vehicle, epoch
) r
WHERE a.vehicle = r.vehicle AND a.epoch = r.epoch;
ALTER TABLE vehicle_status
    ADD COLUMN rx_day TEXT,
    ADD COLUMN rx_bytes_today BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN rx_month TEXT,
    ADD COLUMN rx_bytes_month BIGINT NOT NULL DEFAULT 0;
-- Before this migration only new batches' bytes were counted: a lower bound.
UPDATE vehicle_status SET rx_day = day, rx_bytes_today = bytes_today,
    rx_month = substr(day, 1, 7), rx_bytes_month = bytes_today WHERE day IS NOT NULL;
