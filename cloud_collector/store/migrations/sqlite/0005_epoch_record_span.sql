-- Record times per epoch, so that an old epoch still draining after an agent restarted
-- (its records all older than the new epoch's) is told apart from two agents running as
-- one vehicle (records of both epochs from the same period).
--   epoch_acks.first_record_ms / last_record_ms - the earliest first record time and the
--                          latest last record time (vehicle clock) of the epoch's new,
--                          decoded batches. Not backfilled: receipts do not keep record
--                          times, so an epoch gets them from its next new batch on.
ALTER TABLE epoch_acks ADD COLUMN first_record_ms INTEGER;
ALTER TABLE epoch_acks ADD COLUMN last_record_ms INTEGER;
