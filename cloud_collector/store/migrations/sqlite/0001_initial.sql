-- Road-condition store, SQLite flavour. Times are ms since the Unix epoch (UTC);
-- epoch ids are decimal TEXT (an unsigned 64-bit value does not fit INTEGER).
CREATE TABLE receipts (
    vehicle TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
    fleet TEXT NOT NULL, channel TEXT NOT NULL, received_ms INTEGER NOT NULL,
    payload_bytes INTEGER NOT NULL, records INTEGER NOT NULL,
    PRIMARY KEY (vehicle, epoch, seq)
) WITHOUT ROWID;
CREATE TABLE epoch_acks (
    vehicle TEXT NOT NULL, epoch TEXT NOT NULL, acked_seq INTEGER NOT NULL,
    PRIMARY KEY (vehicle, epoch)
) WITHOUT ROWID;
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL, vehicle TEXT NOT NULL, fleet TEXT NOT NULL, type TEXT NOT NULL,
    attrs TEXT NOT NULL, lat REAL, lon REAL, h3_12 INTEGER, speed_kmh REAL,
    source_bus TEXT, source_id INTEGER, epoch TEXT NOT NULL, seq INTEGER NOT NULL
);
CREATE INDEX events_time ON events (time_ms, id);
CREATE INDEX events_type_time ON events (type, time_ms, id);
CREATE INDEX events_vehicle_time ON events (vehicle, time_ms, id);
CREATE INDEX events_h3 ON events (h3_12);
CREATE TABLE samples (
    vehicle TEXT NOT NULL, name TEXT NOT NULL, time_ms INTEGER NOT NULL,
    value REAL, unit TEXT NOT NULL
);
CREATE INDEX samples_vehicle_name_time ON samples (vehicle, name, time_ms);
CREATE TABLE gnss (
    vehicle TEXT NOT NULL, time_ms INTEGER NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
    mode INTEGER NOT NULL, alt_m REAL, speed_mps REAL, track_deg REAL, clock_offset_ms INTEGER,
    h3_12 INTEGER NOT NULL
);
CREATE INDEX gnss_vehicle_time ON gnss (vehicle, time_ms);
CREATE TABLE health (
    vehicle TEXT NOT NULL, time_ms INTEGER NOT NULL, "values" TEXT NOT NULL
);
CREATE INDEX health_vehicle_time ON health (vehicle, time_ms);
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, received_ms INTEGER NOT NULL, topic TEXT NOT NULL,
    fleet TEXT, vehicle TEXT, reason TEXT NOT NULL, payload BLOB NOT NULL
);
CREATE INDEX quarantine_reason ON quarantine (reason);
CREATE TABLE vehicle_status (
    vehicle TEXT PRIMARY KEY, fleet TEXT NOT NULL, online INTEGER, presence_ms INTEGER,
    last_seen_ms INTEGER, last_epoch TEXT, last_seq INTEGER, lag_ms INTEGER,
    day TEXT, batches_today INTEGER NOT NULL DEFAULT 0, bytes_today INTEGER NOT NULL DEFAULT 0,
    batches_total INTEGER NOT NULL DEFAULT 0, bytes_total INTEGER NOT NULL DEFAULT 0,
    records_total INTEGER NOT NULL DEFAULT 0, duplicates INTEGER NOT NULL DEFAULT 0,
    quarantined INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE vehicle_state (
    vehicle TEXT PRIMARY KEY, cell INTEGER, hour_ms INTEGER, last_fix_ms INTEGER,
    wiper_bits INTEGER NOT NULL, failsafe INTEGER NOT NULL, lane_left INTEGER,
    lane_right INTEGER, pass_flags INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE road_cells (
    cell INTEGER NOT NULL, hour_ms INTEGER NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
    passes INTEGER NOT NULL, wipers INTEGER NOT NULL, failsafe INTEGER NOT NULL,
    lanes INTEGER NOT NULL, speed_sum REAL NOT NULL, speed_n INTEGER NOT NULL,
    PRIMARY KEY (cell, hour_ms)
) WITHOUT ROWID;
CREATE INDEX road_cells_hour ON road_cells (hour_ms, lat, lon);
CREATE TABLE road_events (
    cell INTEGER NOT NULL, hour_ms INTEGER NOT NULL, type TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (cell, hour_ms, type)
) WITHOUT ROWID;
CREATE INDEX road_events_hour ON road_events (hour_ms);
CREATE TABLE sign_clusters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sign_type INTEGER NOT NULL,
    lat REAL NOT NULL, lon REAL NOT NULL, limit_kmh INTEGER, observations INTEGER NOT NULL,
    vehicles INTEGER NOT NULL, first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL
);
CREATE INDEX sign_clusters_type_lat ON sign_clusters (sign_type, lat, lon);
CREATE TABLE sign_vehicles (
    cluster_id INTEGER NOT NULL, vehicle TEXT NOT NULL, PRIMARY KEY (cluster_id, vehicle)
) WITHOUT ROWID;
