-- Appends one line to the security audit log. Lines are chained and signed
-- later, in batches, by the sealer (audit_seal_next), so a request only
-- inserts: chaining each line inside its request held one global lock until
-- COMMIT had flushed (bench/lookup: 75% of database time waiting on it).
--
-- Takes its transaction id before its seq, always: the sealer relies on it
-- (audit_seal_next) to know when a seq that has no line never will have one.
-- For the same reason audit_log_seq must keep CACHE 1 (its default): a
-- session's cached numbers would be drawn before that session's transaction.
CREATE OR REPLACE FUNCTION audit_append(
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
