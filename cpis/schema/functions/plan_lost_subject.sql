-- A subject that lost a plan, and the plan's LA, noted in purge_candidate
-- (migration 0005) whichever way the plan went, so that retention finds the
-- visits and notifications to delete without scanning them all
-- (cpis/adapters/postgres/_retention.py). The triggers are bound here, after
-- their function exists; CREATE OR REPLACE TRIGGER makes re-applying a no-op.
CREATE OR REPLACE FUNCTION plan_lost_subject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO purge_candidate (subject_key, la_ods) VALUES (OLD.subject_key, OLD.la_ods)
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER plan_deleted AFTER DELETE ON plan
    FOR EACH ROW EXECUTE FUNCTION plan_lost_subject();
-- Only when the NHS number changes: a daily re-upload of the same plans pays nothing.
CREATE OR REPLACE TRIGGER plan_subject_changed AFTER UPDATE OF subject_key ON plan
    FOR EACH ROW WHEN (OLD.subject_key IS DISTINCT FROM NEW.subject_key)
    EXECUTE FUNCTION plan_lost_subject();
