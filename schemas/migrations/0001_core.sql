-- Core schema: LAs, organisations, clients, plans (versioned), access events,
-- the notification outbox and the hash-chained security audit log.
-- Personal data is never stored in clear: NHS numbers as a keyed hash (for
-- lookup) plus AES-GCM ciphertext; names and birth dates as ciphertext.

CREATE TABLE local_authority (
    ods_code            text PRIMARY KEY,
    name                text NOT NULL,
    office_phone        text NOT NULL,
    edt_phone           text NOT NULL,
    repeat_window_hours integer NOT NULL DEFAULT 24 CHECK (repeat_window_hours >= 0),
    version             integer NOT NULL DEFAULT 1,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Unscheduled-care organisations whose users make lookups (ED, UTC, ...).
CREATE TABLE organisation (
    ods_code     text PRIMARY KEY,
    name         text NOT NULL,
    setting_type text NOT NULL DEFAULT 'other'
);

CREATE TABLE client (
    id          text PRIMARY KEY,
    role        text NOT NULL CHECK (role IN ('health', 'la', 'admin')),
    ods_codes   text[] NOT NULL,
    jwks        jsonb NOT NULL,
    silent_only boolean NOT NULL DEFAULT false,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Client assertion jti values, kept until the assertion would have expired.
CREATE TABLE used_jti (
    client_id  text NOT NULL,
    jti        text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);

CREATE TABLE plan (
    id            uuid PRIMARY KEY,
    la_ods        text NOT NULL REFERENCES local_authority (ods_code),
    la_plan_id    text NOT NULL,
    subject_key   bytea NOT NULL,
    version       integer NOT NULL,
    updated_at    timestamptz NOT NULL,
    UNIQUE (la_ods, la_plan_id)
);
CREATE INDEX plan_subject_idx ON plan (subject_key);

-- Every version of every plan (FHIR _history). The current version is the
-- row whose version equals plan.version.
CREATE TABLE plan_version (
    plan_id       uuid NOT NULL REFERENCES plan (id) ON DELETE CASCADE,
    version       integer NOT NULL,
    nhs_sealed    bytea NOT NULL,
    plan_type     text NOT NULL CHECK (plan_type IN ('CPP', 'LAC', 'UCPP')),
    start_date    date NOT NULL,
    end_date      date,
    delete_date   date,
    birth_sealed  bytea,
    family_sealed bytea,
    given_sealed  bytea,
    recorded_at   timestamptz NOT NULL,
    PRIMARY KEY (plan_id, version)
);

CREATE TABLE access_event (
    id            uuid PRIMARY KEY,
    subject_key   bytea NOT NULL,
    nhs_sealed    bytea NOT NULL,
    occurred_at   timestamptz NOT NULL,
    client_id     text NOT NULL,
    org_ods       text NOT NULL,
    org_name      text NOT NULL,
    setting_type  text NOT NULL,
    user_id       text NOT NULL,
    user_name     text NOT NULL,
    user_role     text NOT NULL,
    trace_id      text NOT NULL,
    la_codes      text[] NOT NULL,
    -- A view by the same user within 24 h of their last shown view is kept
    -- (it is an access) but not shown in the 25 visits.
    is_repeat     boolean NOT NULL
);
CREATE INDEX access_event_subject_idx ON access_event (subject_key, occurred_at DESC);

-- The durable record of every notification to be delivered (issue 3 delivers).
CREATE TABLE outbox (
    seq             bigserial PRIMARY KEY,
    notification_id uuid NOT NULL UNIQUE,
    kind            text NOT NULL DEFAULT 'access',
    la_ods          text NOT NULL,
    access_event_id uuid REFERENCES access_event (id) ON DELETE CASCADE,
    subject_key     bytea NOT NULL,
    user_id         text NOT NULL,
    org_ods         text NOT NULL,
    plan_ids        text[] NOT NULL,
    created_at      timestamptz NOT NULL,
    state           text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    last_error      text
);
CREATE INDEX outbox_pending_idx ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_repeat_idx ON outbox (la_ods, subject_key, user_id, org_ods, created_at DESC);

-- Append-only, hash-chained security audit log. Each row's hash covers the
-- previous row's hash and its own content, so any edit or deletion breaks the
-- chain from that row on (`cpis audit verify`).
CREATE TABLE audit_log (
    seq        bigint PRIMARY KEY,
    at         timestamptz NOT NULL,
    action     text NOT NULL,
    outcome    integer NOT NULL,
    client_id  text,
    role       text,
    org_ods    text,
    user_id    text,
    resource   text,
    subject    text,
    trace_id   text,
    detail     jsonb NOT NULL DEFAULT '{}',
    prev_hash  bytea NOT NULL,
    hash       bytea NOT NULL
);

CREATE TABLE audit_head (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq  bigint NOT NULL,
    hash bytea NOT NULL
);
INSERT INTO audit_head (seq, hash) VALUES (0, '\x00'::bytea);

CREATE FUNCTION audit_row_text(
    p_seq bigint, p_at timestamptz, p_action text, p_outcome integer, p_client text,
    p_role text, p_org text, p_user text, p_resource text, p_subject text,
    p_trace text, p_detail jsonb
) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT concat_ws(E'\x1f', p_seq::text, to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
        p_action, p_outcome::text, coalesce(p_client, ''), coalesce(p_role, ''),
        coalesce(p_org, ''), coalesce(p_user, ''), coalesce(p_resource, ''),
        coalesce(p_subject, ''), coalesce(p_trace, ''), p_detail::text)
$$;

-- Appends one row under the head's row lock, so rows chain in one order even
-- when many replicas write at once.
CREATE FUNCTION audit_append(
    p_at timestamptz, p_action text, p_outcome integer, p_client text, p_role text,
    p_org text, p_user text, p_resource text, p_subject text, p_trace text, p_detail jsonb
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    h audit_head%ROWTYPE;
    new_hash bytea;
BEGIN
    SELECT * INTO h FROM audit_head FOR UPDATE;
    new_hash := sha256(h.hash || convert_to(audit_row_text(h.seq + 1, p_at, p_action, p_outcome,
        p_client, p_role, p_org, p_user, p_resource, p_subject, p_trace, p_detail), 'UTF8'));
    INSERT INTO audit_log VALUES (h.seq + 1, p_at, p_action, p_outcome, p_client, p_role, p_org,
        p_user, p_resource, p_subject, p_trace, p_detail, h.hash, new_hash);
    UPDATE audit_head SET seq = h.seq + 1, hash = new_hash;
END
$$;

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
