-- Bounded quarantine, vehicle clocks that run ahead, and live epochs.
--   quarantine.size / sha256 / sender - the full payload size and hash (payload may now
--                          be a prefix), and who sent it (the topic's vehicle segment)
--   quarantine_budget    - per sender and UTC day: payloads and bytes kept, and those
--                          over the quota that were only counted
--   health_latest.order_ms - the snapshot's rank for "latest": its time, but never past
--                          when the collector received it
--   vehicle_status.clock_ahead_ms / _at_ms - the last message whose times ran ahead of
--                          the collector's clock: by how much, and when (collector clock)
--   epoch_acks.first_rx_ms / last_rx_ms - collector times of the epoch's first and last
--                          new batch
ALTER TABLE quarantine
    ADD COLUMN size BIGINT,
    ADD COLUMN sha256 BYTEA,
    ADD COLUMN sender TEXT;
UPDATE quarantine SET size = octet_length(payload);
CREATE INDEX quarantine_sha256 ON quarantine (sha256);
CREATE TABLE quarantine_budget (
    sender TEXT NOT NULL, day TEXT NOT NULL,
    stored BIGINT NOT NULL DEFAULT 0, stored_bytes BIGINT NOT NULL DEFAULT 0,
    dropped BIGINT NOT NULL DEFAULT 0, dropped_bytes BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (sender, day)
);
ALTER TABLE health_latest ADD COLUMN order_ms BIGINT NOT NULL DEFAULT 0;
-- A snapshot stamped in the future before this migration ranks as of now.
UPDATE health_latest SET order_ms = LEAST(time_ms, (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT);
UPDATE vehicle_status SET presence_ms = (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT
WHERE presence_ms > (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT;
ALTER TABLE vehicle_status
    ADD COLUMN clock_ahead_ms BIGINT,
    ADD COLUMN clock_ahead_at_ms BIGINT;
ALTER TABLE epoch_acks
    ADD COLUMN first_rx_ms BIGINT,
    ADD COLUMN last_rx_ms BIGINT;
UPDATE epoch_acks a SET first_rx_ms = r.first_ms, last_rx_ms = r.last_ms
FROM (
    SELECT vehicle, epoch, MIN(received_ms) AS first_ms, MAX(received_ms) AS last_ms
    FROM receipts GROUP BY vehicle, epoch
) r
WHERE a.vehicle = r.vehicle AND a.epoch = r.epoch;
CREATE INDEX epoch_acks_last_rx ON epoch_acks (vehicle, last_rx_ms);
