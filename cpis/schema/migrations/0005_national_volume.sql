-- What England's volume needs (issue 13, item 5; measured by bench/national):
-- the daily purge and the LA inbox cost what they touch, not the database's size.
-- The indexes are IF NOT EXISTS so that an operator with a big table can build
-- them CONCURRENTLY by hand first (deploy/README.md, "Upgrades").

-- Subjects that lost a plan, with the plan's LA, however it went: the retention
-- purge, an LA's DELETE or upload delete record, or a plan moved to another NHS
-- number (the triggers in schemas/functions/plan_lost_subject.sql). Retention
-- deletes the visits and notifications of the ones left with no plan, instead
-- of scanning every access event for a subject with none (5 million rows at
-- England's volume, past the statement timeout). A candidate stays until its
-- subject has no plan: its LA names notifications to delete then.
CREATE TABLE purge_candidate (
    subject_key bytea NOT NULL,
    la_ods      text NOT NULL,
    PRIMARY KEY (subject_key, la_ods)
);
-- What the scan would have found, for a database older than this table: visits
-- of subjects with no plan ('' names no LA), and notifications for an LA that no
-- longer holds a plan for their subject.
INSERT INTO purge_candidate (subject_key, la_ods)
SELECT DISTINCT a.subject_key, '' FROM access_event a
WHERE NOT EXISTS (SELECT 1 FROM plan p WHERE p.subject_key = a.subject_key);
INSERT INTO purge_candidate (subject_key, la_ods)
SELECT DISTINCT o.subject_key, o.la_ods FROM outbox o
WHERE NOT EXISTS (SELECT 1 FROM plan p WHERE p.subject_key = o.subject_key AND p.la_ods = o.la_ods)
ON CONFLICT DO NOTHING;

-- The LA inbox lists each notification's deliveries, and retention deletes them,
-- by notification id: without this, each inbox row scanned every delivery.
CREATE INDEX IF NOT EXISTS delivery_notification_idx ON delivery (notification_id);
-- Retention deletes a subject's repeat views too; the other indexes on
-- subject_key leave repeats out (they are never shown).
CREATE INDEX IF NOT EXISTS access_event_repeat_idx ON access_event (subject_key) WHERE is_repeat;
