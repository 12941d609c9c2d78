-- Chain audit rows after they commit, not inside the request's transaction.
--
-- Chaining inside the request meant holding one global lock from the audit
-- insert until COMMIT had flushed to disk, so every audited request in every
-- replica queued behind the one before (bench/lookup: 75% of database time
-- waiting on that lock). Now a request only inserts its row; `audit_chain()`,
-- run every second by `cpis serve` (one replica at a time), gives committed
-- rows their place in the chain in insertion order and links each to the
-- previous row's hash. A row is tamper-evident from the moment it is chained;
-- `cpis audit verify` chains whatever is pending first.

DROP TRIGGER audit_log_no_update ON audit_log;

ALTER TABLE audit_log
    ALTER COLUMN prev_hash DROP NOT NULL,
    ALTER COLUMN hash DROP NOT NULL,
    ADD COLUMN chain_pos bigint UNIQUE;

-- Rows written before this migration are chained again under the new rule.
UPDATE audit_log SET prev_hash = NULL, hash = NULL;

CREATE SEQUENCE audit_log_seq OWNED BY audit_log.seq;
SELECT setval('audit_log_seq', coalesce((SELECT max(seq) FROM audit_log), 0) + 1, false);
ALTER TABLE audit_log ALTER COLUMN seq SET DEFAULT nextval('audit_log_seq');
CREATE INDEX audit_log_unchained_idx ON audit_log (seq) WHERE hash IS NULL;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

-- The only update allowed: giving an unchained row its place and hashes.
CREATE FUNCTION audit_log_only_chaining() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.hash IS NOT NULL OR NEW.hash IS NULL
       OR (OLD.seq, OLD.at, OLD.action, OLD.outcome, OLD.client_id, OLD.role, OLD.org_ods,
           OLD.user_id, OLD.resource, OLD.subject, OLD.trace_id, OLD.detail)
          IS DISTINCT FROM
          (NEW.seq, NEW.at, NEW.action, NEW.outcome, NEW.client_id, NEW.role, NEW.org_ods,
           NEW.user_id, NEW.resource, NEW.subject, NEW.trace_id, NEW.detail) THEN
        RAISE EXCEPTION 'audit_log is append-only';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_log_chain_only BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_only_chaining();

CREATE FUNCTION audit_chain_text(p_pos bigint, r audit_log) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT concat_ws(E'\x1f', p_pos::text, r.seq::text,
        to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), r.action,
        r.outcome::text, coalesce(r.client_id, ''), coalesce(r.role, ''),
        coalesce(r.org_ods, ''), coalesce(r.user_id, ''), coalesce(r.resource, ''),
        coalesce(r.subject, ''), coalesce(r.trace_id, ''), r.detail::text)
$$;

CREATE OR REPLACE FUNCTION audit_append(
    p_at timestamptz, p_action text, p_outcome integer, p_client text, p_role text,
    p_org text, p_user text, p_resource text, p_subject text, p_trace text, p_detail jsonb
) RETURNS void LANGUAGE sql VOLATILE AS $$
    INSERT INTO audit_log (at, action, outcome, client_id, role, org_ods, user_id, resource,
        subject, trace_id, detail)
    VALUES (p_at, p_action, p_outcome, p_client, p_role, p_org, p_user, p_resource, p_subject,
        p_trace, p_detail)
$$;

-- Chains up to p_limit committed rows; returns how many. Only one caller at
-- a time does anything: the others return 0 at once.
CREATE FUNCTION audit_chain(p_limit integer) RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_pos bigint;
    v_prev bytea;
    v_hash bytea;
    r audit_log%ROWTYPE;
    n integer := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7201843552) THEN
        RETURN 0;
    END IF;
    SELECT chain_pos, hash INTO v_pos, v_prev
        FROM audit_log WHERE chain_pos IS NOT NULL ORDER BY chain_pos DESC LIMIT 1;
    IF v_pos IS NULL THEN
        v_pos := 0;
        v_prev := '\x00'::bytea;
    END IF;
    FOR r IN SELECT * FROM audit_log WHERE hash IS NULL ORDER BY seq LIMIT p_limit LOOP
        v_pos := v_pos + 1;
        v_hash := sha256(v_prev || convert_to(audit_chain_text(v_pos, r), 'UTF8'));
        UPDATE audit_log SET chain_pos = v_pos, prev_hash = v_prev, hash = v_hash
            WHERE seq = r.seq;
        v_prev := v_hash;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

DROP FUNCTION audit_row_text(bigint, timestamptz, text, integer, text, text, text, text, text,
    text, text, jsonb);
