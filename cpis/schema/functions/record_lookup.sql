-- Everything an unscheduled lookup with visible plans writes, in one round
-- trip: serialise on the subject, check the plans are those the caller read,
-- store the access event (marking a repeat view), queue one outbox row per LA
-- outside its repeat window, and append the audit line. Returns the LAs
-- notified, or NULL if the plans changed since the read.
--
-- The plan read is a separate statement (subject_plans) because visibility
-- needs the decrypted birth date (the 18th-birthday rule). So that an access
-- event is still recorded against exactly the plans that were read, the
-- caller passes the (id, version) of every plan it saw, and once the
-- subject's lock is held, a difference means NULL and the caller reads again:
-- the same outcome as the lookup running wholly before the concurrent change,
-- with two single-statement transactions instead of four round trips.
--
-- Runs inside the caller's transaction; being VOLATILE, each statement takes
-- a fresh snapshot, so after the advisory lock it sees every committed view.
-- enable_seqscan = off: every statement here is meant to be an index lookup on
-- one subject, whatever the statistics say (see subject_plans.sql); without
-- it bench/lookup saw the outbox repeat-window check scan the whole outbox.
--
-- A repeat view is one within p_repeat_view_window of the same user's last
-- shown view of the subject (cpis.rules.REPEAT_VIEW_WINDOW, passed by the
-- adapter); an LA is not queued again within its own repeat_window_hours of
-- the last notification for the same user, setting and subject. Users are
-- compared by user_key (a keyed hash of the user id); the viewer is stored
-- sealed, and the audit line's user as audit_log keeps it.
CREATE OR REPLACE FUNCTION record_lookup(
    p_subject bytea, p_event uuid, p_nhs_sealed bytea, p_at timestamptz,
    p_client text, p_org text, p_org_name text, p_setting text,
    p_user_key bytea, p_viewer_sealed bytea, p_user_verified boolean, p_practitioner_role uuid,
    p_trace text, p_las text[], p_plan_ids jsonb,
    p_audit_action text, p_audit_role text, p_audit_resource text, p_audit_subject text,
    p_audit_detail jsonb, p_audit_user_sealed bytea, p_based_on text[],
    p_repeat_view_window interval
) RETURNS text[] LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE
    v_repeat boolean;
    v_queued text[];
    v_now text[];
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(encode(p_subject, 'hex'), 0));

    SELECT coalesce(array_agg(id::text || ':' || version ORDER BY id::text || ':' || version), '{}')
        INTO v_now FROM plan WHERE subject_key = p_subject;
    IF v_now IS DISTINCT FROM p_based_on THEN
        RETURN NULL;
    END IF;

    SELECT EXISTS (
        SELECT 1 FROM access_event
        WHERE subject_key = p_subject AND user_key = p_user_key AND NOT is_repeat
          AND occurred_at > p_at - p_repeat_view_window
    ) INTO v_repeat;

    INSERT INTO access_event (id, subject_key, nhs_sealed, occurred_at, client_id, org_ods,
        org_name, setting_type, user_key, viewer_sealed, user_verified, practitioner_role_id,
        trace_id, la_codes, is_repeat)
    VALUES (p_event, p_subject, p_nhs_sealed, p_at, p_client, p_org, p_org_name, p_setting,
        p_user_key, p_viewer_sealed, p_user_verified, p_practitioner_role, p_trace, p_las,
        v_repeat);

    WITH due AS (
        SELECT la.ods_code FROM local_authority la
        WHERE la.ods_code = ANY (p_las)
          AND NOT EXISTS (
            SELECT 1 FROM outbox o
            WHERE o.la_ods = la.ods_code AND o.subject_key = p_subject
              AND o.user_key = p_user_key AND o.org_ods = p_org AND o.kind = 'access'
              AND o.created_at > p_at - make_interval(hours => la.repeat_window_hours))
    ), queued AS (
        INSERT INTO outbox (notification_id, kind, la_ods, access_event_id, subject_key, user_key,
            org_ods, plan_ids, created_at)
        SELECT cpis_uuid7(), 'access', due.ods_code, p_event, p_subject, p_user_key, p_org,
            ARRAY(SELECT jsonb_array_elements_text(p_plan_ids -> due.ods_code)), p_at
        FROM due
        RETURNING la_ods
    )
    SELECT coalesce(array_agg(la_ods ORDER BY la_ods), '{}') INTO v_queued FROM queued;

    PERFORM audit_append(p_at, p_audit_action, 200, p_client, p_audit_role, p_org, p_user_key,
        p_audit_user_sealed, p_audit_resource, p_audit_subject, p_trace,
        p_audit_detail || jsonb_build_object('access_event', p_event, 'notified', v_queued));
    RETURN v_queued;
END
$$;
