-- Access to the HTTP API: bearer tokens (only their SHA-256 is kept), the audit log of
-- authenticated requests, the collector's own generated secrets, and what the city's
-- k-anonymity threshold needs: which vehicles contributed to each cell-hour.
--   api_tokens.fleets      - a JSON array of fleet ids (operators; [] for other roles)
--   api_tokens.expires_ms  - NULL: never
--   api_tokens.revoked_ms  - NULL: not revoked
--   audit_log.rows         - rows (features, vehicles, points, lines) returned; NULL unknown
--   road_cell_vehicles     - one row per (vehicle, hour, cell) the vehicle contributed to
--   road_cells.vehicles    - distinct vehicles of the cell-hour (0 for rows written before
--                            this migration: their contributors are unknown)
CREATE TABLE api_tokens (
    name TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
    fleets TEXT NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER, revoked_ms INTEGER
);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL, token TEXT NOT NULL,
    role TEXT NOT NULL, method TEXT NOT NULL, route TEXT NOT NULL, status INTEGER NOT NULL,
    rows INTEGER
);
CREATE INDEX audit_log_time ON audit_log (time_ms, id);
CREATE TABLE collector_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE road_cell_vehicles (
    vehicle TEXT NOT NULL, hour_ms INTEGER NOT NULL, cell INTEGER NOT NULL,
    PRIMARY KEY (vehicle, hour_ms, cell)
) WITHOUT ROWID;
ALTER TABLE road_cells ADD COLUMN vehicles INTEGER NOT NULL DEFAULT 0;
