-- The audit lines of transactions in [p_lo, p_hi): how many, their seq and
-- time range, and the hash of their text (audit_row_text) in seq order.
CREATE OR REPLACE FUNCTION audit_batch_rows(p_lo xid8, p_hi xid8)
RETURNS TABLE (rows integer, first_seq bigint, last_seq bigint, first_at timestamptz,
    last_at timestamptz, rows_hash bytea)
LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer, min(a.seq), max(a.seq), min(a.at), max(a.at),
        sha256(convert_to(coalesce(string_agg(audit_row_text(a), E'\n' ORDER BY a.seq), ''),
            'UTF8'))
    FROM audit_log a WHERE a.xid >= p_lo AND a.xid < p_hi
$$;
