-- Chain audit rows under a transaction-scoped advisory lock instead of a
-- single "head" row updated by every request: a row updated thousands of
-- times a second piles up dead versions that every later update must walk
-- (measured by bench/lookup as most of PostgreSQL's CPU per lookup).
-- After taking the lock, a fresh statement sees the newest committed row,
-- so rows still chain in one order across replicas.

CREATE OR REPLACE FUNCTION audit_append(
    p_at timestamptz, p_action text, p_outcome integer, p_client text, p_role text,
    p_org text, p_user text, p_resource text, p_subject text, p_trace text, p_detail jsonb
) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_seq bigint;
    v_prev bytea;
    v_hash bytea;
BEGIN
    PERFORM pg_advisory_xact_lock(7201843552);
    SELECT seq, hash INTO v_seq, v_prev FROM audit_log ORDER BY seq DESC LIMIT 1;
    IF v_seq IS NULL THEN
        v_seq := 0;
        v_prev := '\x00'::bytea;
    END IF;
    v_hash := sha256(v_prev || convert_to(audit_row_text(v_seq + 1, p_at, p_action, p_outcome,
        p_client, p_role, p_org, p_user, p_resource, p_subject, p_trace, p_detail), 'UTF8'));
    INSERT INTO audit_log VALUES (v_seq + 1, p_at, p_action, p_outcome, p_client, p_role, p_org,
        p_user, p_resource, p_subject, p_trace, p_detail, v_prev, v_hash);
END
$$;

DROP TABLE audit_head;
