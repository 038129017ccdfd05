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
ALTER TABLE quarantine ADD COLUMN size INTEGER;
ALTER TABLE quarantine ADD COLUMN sha256 BLOB;
ALTER TABLE quarantine ADD COLUMN sender TEXT;
UPDATE quarantine SET size = length(payload);
CREATE INDEX quarantine_sha256 ON quarantine (sha256);
CREATE TABLE quarantine_budget (
    sender TEXT NOT NULL, day TEXT NOT NULL,
    stored INTEGER NOT NULL DEFAULT 0, stored_bytes INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0, dropped_bytes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sender, day)
) WITHOUT ROWID;
ALTER TABLE health_latest ADD COLUMN order_ms INTEGER NOT NULL DEFAULT 0;
-- A snapshot stamped in the future before this migration ranks as of now.
UPDATE health_latest SET order_ms = MIN(time_ms, CAST(strftime('%s', 'now') AS INTEGER) * 1000);
UPDATE vehicle_status SET presence_ms = CAST(strftime('%s', 'now') AS INTEGER) * 1000
WHERE presence_ms > CAST(strftime('%s', 'now') AS INTEGER) * 1000;
ALTER TABLE vehicle_status ADD COLUMN clock_ahead_ms INTEGER;
ALTER TABLE vehicle_status ADD COLUMN clock_ahead_at_ms INTEGER;
ALTER TABLE epoch_acks ADD COLUMN first_rx_ms INTEGER;
ALTER TABLE epoch_acks ADD COLUMN last_rx_ms INTEGER;
UPDATE epoch_acks SET
    first_rx_ms = (SELECT MIN(received_ms) FROM receipts r
        WHERE r.vehicle = epoch_acks.vehicle AND r.epoch = epoch_acks.epoch),
    last_rx_ms = (SELECT MAX(received_ms) FROM receipts r
        WHERE r.vehicle = epoch_acks.vehicle AND r.epoch = epoch_acks.epoch);
CREATE INDEX epoch_acks_last_rx ON epoch_acks (vehicle, last_rx_ms);
