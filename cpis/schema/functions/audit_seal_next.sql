-- The next seal to make, without making it: the service signs it and inserts
-- it in the same transaction, which holds the sealing lock until commit. No
-- row when another session is sealing (unless p_wait), or nothing is final.
--
-- Batches: everything written by transactions older than the oldest one still
-- running (so nothing can still join the range), at most p_max_rows lines (a
-- batch's text is built in memory), from where the last seal ended. Which
-- lines a seal covers follows from their transaction ids, so no line is ever
-- updated: chaining line by line rewrote every line after commit, a quarter
-- of PostgreSQL's work per lookup in bench/lookup.
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
CREATE OR REPLACE FUNCTION audit_seal_next(p_wait boolean, p_max_rows integer)
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
