-- The audit lines whose seq is in (p_from, p_to]: how many, how many were
-- written by a transaction at or after p_xid_hi (none should be), and how many
-- carry a seq that p_void says never had a line (none should).
CREATE OR REPLACE FUNCTION audit_seq_span(p_from bigint, p_to bigint, p_xid_hi xid8,
    p_void bigint[])
RETURNS TABLE (present integer, late integer, in_void integer)
LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer,
        count(*) FILTER (WHERE a.xid >= p_xid_hi)::integer,
        count(*) FILTER (WHERE EXISTS (
            SELECT 1 FROM generate_series(1, coalesce(array_length(p_void, 1), 0), 2) i
            WHERE a.seq BETWEEN p_void[i] AND p_void[i + 1]))::integer
    FROM audit_log a WHERE a.seq > p_from AND a.seq <= p_to
$$;
