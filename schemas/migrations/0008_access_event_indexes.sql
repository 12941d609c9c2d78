-- The repeat-view check looks for the same user's last shown view of a
-- subject; with only (subject_key, occurred_at) it walked every view of the
-- subject in the last 24 hours, so a child seen by many staff in a day made
-- each further lookup slower. Index exactly what each query asks.
DROP INDEX access_event_subject_idx;
CREATE INDEX access_event_history_idx ON access_event (subject_key, occurred_at DESC)
    WHERE NOT is_repeat;
CREATE INDEX access_event_user_idx ON access_event (subject_key, user_id, occurred_at DESC)
    WHERE NOT is_repeat;
