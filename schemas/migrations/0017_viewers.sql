-- The viewer of an access event as NHS England's CP-IS API shows it (issue 8):
-- the person's role code and SDS role profile when a verified identity (an
-- NHS CIS2 ID token, exchanged for a user-restricted access token) supplied
-- them, whether it was verified or asserted by the client in headers, and the
-- id of the PractitionerRole the AuditEvent points at (one per person, role
-- and organisation, computed by the service: cpis.model.Accessor).
ALTER TABLE access_event
    ADD COLUMN role_code text,
    ADD COLUMN role_profile_id text,
    ADD COLUMN user_verified boolean NOT NULL DEFAULT false,
    ADD COLUMN practitioner_role_id uuid;
CREATE INDEX access_event_practitioner_role_idx ON access_event (practitioner_role_id)
    WHERE practitioner_role_id IS NOT NULL;

-- A health client's registered NHS CIS2 client id: the audience its users' ID
-- tokens must carry to be exchanged for a user-restricted access token.
ALTER TABLE client ADD COLUMN cis2_client_id text;

DROP FUNCTION record_lookup(
    bytea, uuid, bytea, timestamptz, text, text, text, text, text, text, text, text,
    text[], jsonb, text, text, text, text, jsonb, text[]);

-- record_lookup as in 0007, storing the viewer's role code, role profile,
-- verification and PractitionerRole id.
CREATE FUNCTION record_lookup(
    p_subject bytea, p_event uuid, p_nhs_sealed bytea, p_at timestamptz,
    p_client text, p_org text, p_org_name text, p_setting text,
    p_user text, p_user_name text, p_user_role text, p_trace text,
    p_las text[], p_plan_ids jsonb,
    p_audit_action text, p_audit_role text, p_audit_resource text, p_audit_subject text,
    p_audit_detail jsonb, p_based_on text[],
    p_role_code text, p_role_profile text, p_user_verified boolean, p_practitioner_role uuid
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
        WHERE subject_key = p_subject AND user_id = p_user AND NOT is_repeat
          AND occurred_at > p_at - interval '24 hours'
    ) INTO v_repeat;

    INSERT INTO access_event (id, subject_key, nhs_sealed, occurred_at, client_id, org_ods,
        org_name, setting_type, user_id, user_name, user_role, trace_id, la_codes, is_repeat,
        role_code, role_profile_id, user_verified, practitioner_role_id)
    VALUES (p_event, p_subject, p_nhs_sealed, p_at, p_client, p_org, p_org_name, p_setting,
        p_user, p_user_name, p_user_role, p_trace, p_las, v_repeat,
        p_role_code, p_role_profile, p_user_verified, p_practitioner_role);

    WITH due AS (
        SELECT la.ods_code FROM local_authority la
        WHERE la.ods_code = ANY (p_las)
          AND NOT EXISTS (
            SELECT 1 FROM outbox o
            WHERE o.la_ods = la.ods_code AND o.subject_key = p_subject AND o.user_id = p_user
              AND o.org_ods = p_org AND o.kind = 'access'
              AND o.created_at > p_at - make_interval(hours => la.repeat_window_hours))
    ), queued AS (
        INSERT INTO outbox (notification_id, kind, la_ods, access_event_id, subject_key, user_id,
            org_ods, plan_ids, created_at)
        SELECT cpis_uuid7(), 'access', due.ods_code, p_event, p_subject, p_user, p_org,
            ARRAY(SELECT jsonb_array_elements_text(p_plan_ids -> due.ods_code)), p_at
        FROM due
        RETURNING la_ods
    )
    SELECT coalesce(array_agg(la_ods ORDER BY la_ods), '{}') INTO v_queued FROM queued;

    PERFORM audit_append(p_at, p_audit_action, 200, p_client, p_audit_role, p_org, p_user,
        p_audit_resource, p_audit_subject, p_trace,
        p_audit_detail || jsonb_build_object('access_event', p_event, 'notified', v_queued));
    RETURN v_queued;
END
$$;
