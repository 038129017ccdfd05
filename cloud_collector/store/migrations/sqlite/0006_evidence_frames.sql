-- Raw CAN frames an agent kept as evidence of an urgent event (protocol schema 2, frm.ev).
-- A frame belongs to the event of its vehicle whose source bus and time it names; the
-- event may arrive before or after its frames (it travels in an urgent batch, they in bulk
-- batches), so there is no foreign key: the event's (vehicle, source_bus, time_ms) finds
-- its frames. Frames of batches without links (schema 1) are not stored.
--   event_ms - the linked event's time (vehicle clock, ms)
--   time_us  - the frame's time (vehicle clock, µs)
CREATE TABLE evidence_frames (
    vehicle TEXT NOT NULL, bus TEXT NOT NULL, event_ms INTEGER NOT NULL,
    time_us INTEGER NOT NULL, can_id INTEGER NOT NULL, extended INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX evidence_frames_event ON evidence_frames (vehicle, bus, event_ms, time_us);
