-- The outbox is written on every notifying lookup, so every index on it is
-- paid on the hot path. Key it by its notification id (a time-ordered UUID,
-- so inserts append to the index) instead of carrying both a serial key and a
-- unique notification id, and drop the foreign key to access_event: the two
-- rows are written by the same statement and deleted together by retention.
ALTER TABLE outbox DROP CONSTRAINT outbox_access_event_id_fkey;
ALTER TABLE outbox DROP CONSTRAINT outbox_pkey;
ALTER TABLE outbox DROP CONSTRAINT outbox_notification_id_key;
ALTER TABLE outbox DROP COLUMN seq;
ALTER TABLE outbox ADD PRIMARY KEY (notification_id);
