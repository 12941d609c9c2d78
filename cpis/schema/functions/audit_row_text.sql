-- One audit line as the text its batch's hash covers: a JSON array, so no
-- value can run into its neighbour (a TraceID is the caller's text) and NULL
-- is not ''.
CREATE OR REPLACE FUNCTION audit_row_text(r audit_log) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_array(r.seq, r.xid::text,
        to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), r.action, r.outcome,
        r.client_id, r.role, r.org_ods, encode(r.user_key, 'hex'), encode(r.user_sealed, 'hex'),
        r.resource, r.subject, r.trace_id, r.detail)::text
$$;
