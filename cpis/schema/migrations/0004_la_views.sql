-- What the LA's own views read (issue 12): the inbox grouped by child, a page at
-- a time, and the list of its uploads.
--
-- The inbox lists children by their newest attendance in the filter, a page at a
-- time by keyset (the newest attendance's time and notification id of the last
-- child shown), so page 50 costs what page 1 does (bench/inbox). outbox_inbox_idx
-- had only the time; with the notification id too, a cursor is an index condition.
-- The partial index serves the "new" filter, the one an LA lives in: it walks an
-- LA's unacknowledged attendances newest first without wading through the
-- acknowledged ones between them (bench/inbox: 1.5-2.5x faster pages with 100,000
-- acknowledged). Each notifying lookup pays one entry in it; acknowledging takes
-- the row out. Whether a row's child has a newer one (then the child was listed
-- already) is asked of outbox_repeat_idx, which leads with (la_ods, subject_key):
-- a second partial index for that measured no faster, so the lookup does not pay
-- for one.
DROP INDEX outbox_inbox_idx;
CREATE INDEX outbox_inbox_idx ON outbox (la_ods, created_at, notification_id);
CREATE INDEX outbox_inbox_new_idx ON outbox (la_ods, created_at, notification_id)
    WHERE kind = 'access' AND acknowledged_at IS NULL;

-- How many records got each code ({"CPR06": 998, "CPR04": 2}), and how many there
-- were, kept beside the acknowledgement: the uploads list shows them for every
-- file, and a 100,000-record acknowledgement is megabytes of jsonb to read for
-- two numbers. Files stored before this migration get theirs from it here.
ALTER TABLE upload ADD COLUMN record_codes jsonb NOT NULL DEFAULT '{}';
ALTER TABLE upload ADD COLUMN records integer NOT NULL DEFAULT 0;
UPDATE upload SET
    records = coalesce(jsonb_array_length(acknowledgement -> 'records'), 0),
    record_codes = coalesce(acknowledgement -> 'summary', '{}');

-- The inbox shows what became of each notification (rest-hook delivered, MESH
-- dead): its deliveries, found by notification id, which no index led with.
CREATE INDEX delivery_notification_idx ON delivery (notification_id);
