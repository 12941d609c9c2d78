-- Issue 9, items 3 and 4: staff personal data sealed at rest, and an audit
-- log whose seals are signed with a key the database never holds.
--
-- What this does to an existing (development) database, since nothing has
-- been released and SQL cannot seal without the keys:
--   * every access event is deleted, with its outbox rows and their
--     deliveries: their user ids, names and roles were stored in clear;
--   * who acknowledged an LA inbox notification is forgotten (the time stays);
--   * the security audit log and its seals are emptied: the rows' user ids
--     were in clear and the seals were unsigned, so no seal made before this
--     migration could be told apart from one a database superuser made.
-- Plans, LAs, clients, subscriptions, uploads and the person index are kept.

-- --- Item 4: staff data sealed -------------------------------------------------
--
-- Clinicians' ids, names, job roles, national role codes and SDS role profile
-- ids are personal data (staff's). In access_event they become one AES-GCM
-- value, viewer_sealed (Vault.seal, purpose "viewer"), beside user_key, a
-- keyed hash of the user id (Vault.blind, purpose "user_id") on which the
-- 24-hour repeat-view rule and the LAs' repeat-notification window compare
-- users. The PractitionerRole id is now a keyed hash as well (see
-- cpis.adapters.postgres.practitioner_role_id); an unkeyed uuid5 of the same
-- fields could be confirmed by anyone guessing a name.

DELETE FROM delivery d USING outbox o
    WHERE d.notification_id = o.notification_id AND o.kind = 'access';
DELETE FROM outbox WHERE kind = 'access';
DELETE FROM access_event;

-- Dropping user_id drops access_event_user_idx with it.
ALTER TABLE access_event
    DROP COLUMN user_id,
    DROP COLUMN user_name,
    DROP COLUMN user_role,
    DROP COLUMN role_code,
    DROP COLUMN role_profile_id,
    ADD COLUMN user_key bytea NOT NULL,
    ADD COLUMN viewer_sealed bytea NOT NULL,
    ALTER COLUMN practitioner_role_id SET NOT NULL;
CREATE INDEX access_event_user_idx ON access_event (subject_key, user_key, occurred_at DESC)
    WHERE NOT is_repeat;
DROP INDEX access_event_practitioner_role_idx;
CREATE INDEX access_event_practitioner_role_idx ON access_event (practitioner_role_id);

-- Dropping user_id drops outbox_repeat_idx with it. acknowledged_by held the
-- LA user's id (or their system's client id): sealed too, purpose
-- "acknowledged_by".
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_fields;
ALTER TABLE outbox
    DROP COLUMN user_id,
    DROP COLUMN acknowledged_by,
    ADD COLUMN user_key bytea,
    ADD COLUMN acknowledged_by_sealed bytea;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_fields CHECK (
    CASE kind
        WHEN 'access' THEN user_key IS NOT NULL AND org_ods IS NOT NULL
            AND old_nhs_sealed IS NULL AND new_nhs_sealed IS NULL
        ELSE access_event_id IS NULL AND user_key IS NULL AND org_ods IS NULL
            AND old_nhs_sealed IS NOT NULL
    END
);
CREATE INDEX outbox_repeat_idx ON outbox (la_ods, subject_key, user_key, org_ods, created_at DESC);

-- --- Item 3: the audit log, signed and continuous ---------------------------------

DROP FUNCTION audit_seal();
DROP FUNCTION audit_batch_hash(xid8, xid8, bytea);
DROP FUNCTION audit_append(timestamptz, text, integer, text, text, text, text, text, text, text,
    jsonb);
DROP TABLE audit_seal;

ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_delete;
TRUNCATE audit_log;
ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_delete;
ALTER SEQUENCE audit_log_seq RESTART WITH 1;

-- The user is kept as in access_event: user_key to find a person's lines by
-- equality, user_sealed (purpose "user_id") to read who it was.
ALTER TABLE audit_log
    DROP COLUMN user_id,
    ADD COLUMN user_key bytea,
    ADD COLUMN user_sealed bytea;

-- One line as the text its batch's hash covers: a JSON array, so no value
-- can run into its neighbour (a TraceID is the caller's text) and NULL is not ''.
CREATE OR REPLACE FUNCTION audit_row_text(r audit_log) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_array(r.seq, r.xid::text,
        to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), r.action, r.outcome,
        r.client_id, r.role, r.org_ods, encode(r.user_key, 'hex'), encode(r.user_sealed, 'hex'),
        r.resource, r.subject, r.trace_id, r.detail)::text
$$;

-- Takes its transaction id before its seq, always: the sealer relies on it
-- (audit_seal_next) to know when a seq that has no line never will have one.
-- For the same reason audit_log_seq must keep CACHE 1 (its default): a
-- session's cached numbers would be drawn before that session's transaction.
CREATE FUNCTION audit_append(
    p_at timestamptz, p_action text, p_outcome integer, p_client text, p_role text,
    p_org text, p_user_key bytea, p_user_sealed bytea, p_resource text, p_subject text,
    p_trace text, p_detail jsonb
) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_current_xact_id();
    INSERT INTO audit_log (at, action, outcome, client_id, role, org_ods, user_key, user_sealed,
        resource, subject, trace_id, detail)
    VALUES (p_at, p_action, p_outcome, p_client, p_role, p_org, p_user_key, p_user_sealed,
        p_resource, p_subject, p_trace, p_detail);
END
$$;

-- One seal per batch: the lines written by transactions with ids in
-- [xid_lo, xid_hi), as in 0009, now also saying which seq numbers are
-- accounted for and signed by the service (cpis.adapters.audit_log holds the
-- format of `hash`, the key and the checks). seq_void lists, as inclusive
-- [from, to] pairs, the seq numbers up to seq_final that no line will ever
-- carry (their transaction rolled back, or the sequence skipped them in a
-- crash); seq_ceiling and xid_ceiling are what later seals work seq_final out
-- from. A seal of no lines (first_seq NULL) only moves seq_final on: it is
-- made once after the last lines of a busy spell, so that they too are
-- accounted for without waiting for the next line.
CREATE TABLE audit_seal (
    batch       bigint PRIMARY KEY,
    xid_lo      xid8 NOT NULL,
    xid_hi      xid8 NOT NULL,
    rows        integer NOT NULL,
    first_seq   bigint,
    last_seq    bigint,
    rows_hash   bytea NOT NULL,
    seq_final   bigint NOT NULL,
    seq_void    bigint[] NOT NULL,
    seq_ceiling bigint NOT NULL,
    xid_ceiling xid8 NOT NULL,
    prev_hash   bytea NOT NULL,
    hash        bytea NOT NULL UNIQUE,
    sealed_at   timestamptz NOT NULL,
    key_id      text NOT NULL,
    signature   bytea NOT NULL
);
CREATE TRIGGER audit_seal_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_seal
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

-- The lines of transactions in [p_lo, p_hi): how many, their seq and time
-- range, and the hash of their text in seq order.
CREATE FUNCTION audit_batch_rows(p_lo xid8, p_hi xid8)
RETURNS TABLE (rows integer, first_seq bigint, last_seq bigint, first_at timestamptz,
    last_at timestamptz, rows_hash bytea)
LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer, min(a.seq), max(a.seq), min(a.at), max(a.at),
        sha256(convert_to(coalesce(string_agg(audit_row_text(a), E'\n' ORDER BY a.seq), ''),
            'UTF8'))
    FROM audit_log a WHERE a.xid >= p_lo AND a.xid < p_hi
$$;

-- The lines whose seq is in (p_from, p_to]: how many, how many were written
-- by a transaction at or after p_xid_hi (none should be), and how many carry
-- a seq that p_void says never had a line (none should).
CREATE FUNCTION audit_seq_span(p_from bigint, p_to bigint, p_xid_hi xid8, p_void bigint[])
RETURNS TABLE (present integer, late integer, in_void integer)
LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer,
        count(*) FILTER (WHERE a.xid >= p_xid_hi)::integer,
        count(*) FILTER (WHERE EXISTS (
            SELECT 1 FROM generate_series(1, coalesce(array_length(p_void, 1), 0), 2) i
            WHERE a.seq BETWEEN p_void[i] AND p_void[i + 1]))::integer
    FROM audit_log a WHERE a.seq > p_from AND a.seq <= p_to
$$;

-- The next seal to make, without making it: the service signs it and inserts
-- it in the same transaction, which holds the sealing lock until commit. No
-- row when another session is sealing (unless p_wait), or nothing is final.
--
-- Batches: as in 0009, everything written by transactions older than the
-- oldest one still running, at most p_max_rows lines (a batch's text is built
-- in memory), from where the last seal ended.
--
-- Continuity of seq: audit_append takes its transaction id before drawing a
-- seq, and this function reads the sequence (seq_ceiling) before taking its
-- own transaction id (xid_ceiling; ids are handed out in order), so a
-- transaction holding a seq up to seq_ceiling has an id below xid_ceiling.
-- (A snapshot's xmax would not do: it is one past the latest *completed* id,
-- and a transaction given a higher id earlier may still be running.) Once a
-- later seal's batch bound reaches that xid_ceiling, every such transaction
-- has finished, so every seq up to that seq_ceiling either has its line in a
-- batch sealed by then or never will: seq_final is the highest seq_ceiling
-- whose xid_ceiling the batch bound has reached, and seq_void the numbers in
-- (previous seq_final, seq_final] with no line.
CREATE FUNCTION audit_seal_next(p_wait boolean, p_max_rows integer)
RETURNS TABLE (batch bigint, xid_lo xid8, xid_hi xid8, rows integer, first_seq bigint,
    last_seq bigint, rows_hash bytea, seq_final bigint, seq_void bigint[], seq_ceiling bigint,
    xid_ceiling xid8, prev_hash bytea, sealed_at timestamptz, full_batch boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_last audit_seal%ROWTYPE;
    v_ceiling bigint;
    v_xid_ceiling xid8;
    v_snap pg_snapshot;
    v_lo xid8;
    v_hi xid8;
    v_cap xid8;
    v_prev bytea;
    v_from bigint;
    v_final bigint;
    v_void bigint[];
    b record;
BEGIN
    IF p_wait THEN
        PERFORM pg_advisory_xact_lock(7201843552);
    ELSIF NOT pg_try_advisory_xact_lock(7201843552) THEN
        RETURN;
    END IF;
    -- The sequence first, this transaction's id second (see above).
    SELECT CASE WHEN s.is_called THEN s.last_value ELSE s.last_value - 1 END
        INTO v_ceiling FROM audit_log_seq s;
    SELECT pg_current_xact_id() INTO v_xid_ceiling;
    SELECT pg_current_snapshot() INTO v_snap;
    v_hi := pg_snapshot_xmin(v_snap);
    SELECT * INTO v_last FROM audit_seal s ORDER BY s.batch DESC LIMIT 1;
    IF v_last.batch IS NULL THEN
        v_lo := '0'::xid8;
        v_prev := '\x00'::bytea;
        v_from := 0;
    ELSE
        v_lo := v_last.xid_hi;
        v_prev := v_last.hash;
        v_from := v_last.seq_final;
    END IF;
    IF v_hi <= v_lo THEN
        RETURN;
    END IF;
    SELECT a.xid INTO v_cap FROM audit_log a
        WHERE a.xid >= v_lo AND a.xid < v_hi ORDER BY a.xid OFFSET p_max_rows LIMIT 1;
    IF v_cap IS NOT NULL AND v_cap > v_lo THEN
        v_hi := v_cap;
    END IF;
    SELECT * INTO b FROM audit_batch_rows(v_lo, v_hi);
    SELECT greatest(v_from, coalesce(max(s.seq_ceiling), 0)) INTO v_final
        FROM (SELECT s.seq_ceiling FROM audit_seal s WHERE s.xid_ceiling <= v_hi
              ORDER BY s.batch DESC LIMIT 1) s;
    IF b.rows = 0 AND v_final = v_from THEN
        RETURN;  -- nothing to seal: the next seal starts from the same bound
    END IF;
    WITH present AS (
        SELECT a.seq FROM audit_log a WHERE a.seq > v_from AND a.seq <= v_final
        UNION ALL
        SELECT v_final + 1
    ), steps AS (
        SELECT p.seq, lag(p.seq, 1, v_from) OVER (ORDER BY p.seq) AS before FROM present p
    ), gaps AS (
        SELECT st.before + 1 AS lo, st.seq - 1 AS hi FROM steps st WHERE st.seq > st.before + 1
    )
    SELECT coalesce(array_agg(t.v ORDER BY g.lo, t.k), '{}') INTO v_void
        FROM gaps g CROSS JOIN LATERAL (VALUES (0, g.lo), (1, g.hi)) AS t (k, v);
    RETURN QUERY SELECT coalesce(v_last.batch, 0) + 1, v_lo, v_hi, b.rows, b.first_seq,
        b.last_seq, b.rows_hash, v_final, v_void, v_ceiling, v_xid_ceiling, v_prev,
        clock_timestamp(), v_cap IS NOT NULL AND v_cap > v_lo;
END
$$;

-- record_lookup as in 0017, with the viewer sealed: user_key for the repeat
-- rules, viewer_sealed and the keyed PractitionerRole id for the event, and
-- the audit line's user as audit_log keeps it.
DROP FUNCTION record_lookup(
    bytea, uuid, bytea, timestamptz, text, text, text, text, text, text, text, text,
    text[], jsonb, text, text, text, text, jsonb, text[], text, text, boolean, uuid);

CREATE FUNCTION record_lookup(
    p_subject bytea, p_event uuid, p_nhs_sealed bytea, p_at timestamptz,
    p_client text, p_org text, p_org_name text, p_setting text,
    p_user_key bytea, p_viewer_sealed bytea, p_user_verified boolean, p_practitioner_role uuid,
    p_trace text, p_las text[], p_plan_ids jsonb,
    p_audit_action text, p_audit_role text, p_audit_resource text, p_audit_subject text,
    p_audit_detail jsonb, p_audit_user_sealed bytea, p_based_on text[]
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
          AND occurred_at > p_at - interval '24 hours'
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
