-- A subject's plans, each at its current version with its LA: the lookup's
-- read (visibility is then judged by cpis.rules, which needs the decrypted
-- birth date for the 18th-birthday rule).
--
-- enable_seqscan = off keeps it on its indexes whatever the statistics say: on
-- a new or fast-growing database the planner has no statistics yet (auto-
-- analyze runs at most once a minute) and picks sequential scans that its
-- cached plans then keep, so lookups got slower with every lookup made
-- (bench/lookup). It is meant to be an index lookup on one subject.
CREATE OR REPLACE FUNCTION subject_plans(p_subject bytea)
RETURNS TABLE (
    id uuid, la_ods text, la_plan_id text, updated_at timestamptz, version integer,
    nhs_sealed bytea, plan_type text, start_date date, end_date date, delete_date date,
    birth_sealed bytea, family_sealed bytea, given_sealed bytea, recorded_at timestamptz,
    la_name text, office_phone text, edt_phone text, repeat_window_hours integer,
    la_version integer, la_updated_at timestamptz
) LANGUAGE sql STABLE SET enable_seqscan = off AS $$
    SELECT p.id, p.la_ods, p.la_plan_id, p.updated_at, v.version, v.nhs_sealed, v.plan_type,
        v.start_date, v.end_date, v.delete_date, v.birth_sealed, v.family_sealed,
        v.given_sealed, v.recorded_at, la.name, la.office_phone, la.edt_phone,
        la.repeat_window_hours, la.version, la.updated_at
    FROM plan p
    JOIN plan_version v ON v.plan_id = p.id AND v.version = p.version
    JOIN local_authority la ON la.ods_code = p.la_ods
    WHERE p.subject_key = p_subject
    ORDER BY v.start_date DESC, p.id
$$;
