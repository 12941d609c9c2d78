-- The schema's tables, indexes, constraints and sequences, as they are today.
--
-- SQL functions are not here: each has its own file in cpis/schema/functions/,
-- applied with CREATE OR REPLACE after the migrations on every migrate, with
-- the triggers that call it (a trigger cannot be bound before its function
-- exists). Later changes to tables go in new migrations after this one.
--
-- Personal data is never stored in clear: NHS numbers as a keyed hash (for
-- lookup) plus AES-GCM ciphertext; names, birth dates and staff details as
-- ciphertext (Vault.seal); users compared by a keyed hash of their id
-- (Vault.blind). A dump of any table reveals no child, parent or member of staff.
--
-- Column order follows the development history this baseline replaces, so
-- that a database made from it is the same, column for column, as one made by
-- those migrations (tests/integration/test_schema.py).

-- --- Reference data and clients ----------------------------------------------

-- repeat_window_hours has no default: every writer names it, and the default
-- for an LA registered without one is cpis.rules.DEFAULT_NOTIFY_REPEAT_HOURS.
CREATE TABLE local_authority (
    ods_code            text PRIMARY KEY,
    name                text NOT NULL,
    office_phone        text NOT NULL,
    edt_phone           text NOT NULL,
    repeat_window_hours integer NOT NULL CHECK (repeat_window_hours >= 0),
    version             integer NOT NULL DEFAULT 1,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Unscheduled-care organisations whose users make lookups (ED, UTC, ...).
CREATE TABLE organisation (
    ods_code     text PRIMARY KEY,
    name         text NOT NULL,
    setting_type text NOT NULL DEFAULT 'other'
);

-- cis2_client_id: a health client's registered NHS CIS2 client id, the
-- audience its users' ID tokens must carry to be exchanged for a
-- user-restricted access token.
CREATE TABLE client (
    id             text PRIMARY KEY,
    role           text NOT NULL CHECK (role IN ('health', 'la', 'admin')),
    ods_codes      text[] NOT NULL,
    jwks           jsonb NOT NULL,
    silent_only    boolean NOT NULL DEFAULT false,
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    cis2_client_id text
);

-- Client assertion jti values, kept until the assertion would have expired.
CREATE TABLE used_jti (
    client_id  text NOT NULL,
    jti        text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);

-- What every cpis process on this database must agree on (issue 9, items 12-13):
--   key:hash         fingerprint of the HMAC key NHS numbers are hashed with
--   key:data:KID     fingerprint of each data key that has sealed values here
--   person_index     none | local | pds: what `cpis serve` checks uploads against
-- Fingerprints are truncated SHA-256 of the key with a domain prefix: they name
-- a key, and reveal nothing of it.
CREATE TABLE service_setting (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- --- Plans ---------------------------------------------------------------------

-- fillfactor 50 leaves room on plan's pages for each row's next version, so
-- that replacing a plan is a HOT (heap-only tuple) update: the new row goes on
-- the same page and none of plan's three indexes gets a new entry, as long as
-- the subject key is unchanged. A daily upload replaces every plan an LA
-- holds; bench/upload measured every one of those updates HOT with this, and
-- plan's size the same from one upload to the next.
CREATE TABLE plan (
    id            uuid PRIMARY KEY,
    la_ods        text NOT NULL REFERENCES local_authority (ods_code),
    la_plan_id    text NOT NULL,
    subject_key   bytea NOT NULL,
    version       integer NOT NULL,
    updated_at    timestamptz NOT NULL,
    UNIQUE (la_ods, la_plan_id)
) WITH (fillfactor = 50);
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

-- Batch uploads (issue 4): one row per applied file, keyed by the LA's own
-- sequence number, holding the acknowledgement that was sent back, so a file
-- sent again gets the same acknowledgement and nothing is applied twice.
CREATE TABLE upload (
    la_ods          text NOT NULL REFERENCES local_authority (ods_code),
    sequence        bigint NOT NULL,
    received_at     timestamptz NOT NULL,
    file_code       text NOT NULL,
    acknowledgement jsonb NOT NULL,
    PRIMARY KEY (la_ods, sequence)
);

-- --- Access events (the 25 visits) ------------------------------------------------

-- The viewer is one AES-GCM value, viewer_sealed (Vault.seal, purpose
-- "viewer": user id, name, job role, national role code, SDS role profile),
-- beside user_key, a keyed hash of the user id (Vault.blind, purpose
-- "user_id") on which the repeat-view rule and the LAs' repeat-notification
-- window compare users. user_verified: the viewer came from a verified NHS
-- CIS2 identity, not from the client's headers. practitioner_role_id is the
-- PractitionerRole the AuditEvent points at, a keyed hash of person, role and
-- organisation (cpis.adapters.postgres.practitioner_role_id).
CREATE TABLE access_event (
    id                   uuid PRIMARY KEY,
    subject_key          bytea NOT NULL,
    nhs_sealed           bytea NOT NULL,
    occurred_at          timestamptz NOT NULL,
    client_id            text NOT NULL,
    org_ods              text NOT NULL,
    org_name             text NOT NULL,
    setting_type         text NOT NULL,
    trace_id             text NOT NULL,
    la_codes             text[] NOT NULL,
    -- A repeat view (cpis.rules.REPEAT_VIEW_WINDOW) is kept, since it is an
    -- access, but not shown in the 25 visits.
    is_repeat            boolean NOT NULL,
    user_verified        boolean NOT NULL DEFAULT false,
    practitioner_role_id uuid NOT NULL,
    user_key             bytea NOT NULL,
    viewer_sealed        bytea NOT NULL
);
-- Exactly what each query asks: the 25 visits, and the repeat-view check for
-- the same user's last shown view of a subject (with only (subject_key,
-- occurred_at) it walked every view of the subject in the window, so a child
-- seen by many staff in a day made each further lookup slower).
CREATE INDEX access_event_history_idx ON access_event (subject_key, occurred_at DESC)
    WHERE NOT is_repeat;
CREATE INDEX access_event_user_idx ON access_event (subject_key, user_key, occurred_at DESC)
    WHERE NOT is_repeat;
CREATE INDEX access_event_practitioner_role_idx ON access_event (practitioner_role_id);

-- --- Notifications ----------------------------------------------------------------

-- The durable record of every notification: the one logical notification per
-- LA per access event (its id is what receivers de-duplicate on) and the LA's
-- web-inbox entry. The dispatcher fans each row out to one delivery per
-- channel the LA has configured; state is 'pending' until then, 'fanned' after.
--
-- It is written on every notifying lookup, so every index on it is paid on the
-- hot path: it is keyed by its notification id (time-ordered, so inserts
-- append to the index), and has no foreign key to access_event (the two rows
-- are written by the same statement and deleted together by retention). Every
-- writer names the id: record_lookup() a UUIDv7 (cpis_uuid7()), the index
-- check a uuid5.
--
-- Kind 'nhs-number-inactive' (issue 4 item 6): the person index says an NHS
-- number an LA holds plans for was superseded or retired. Such a row has no
-- access event, user or setting; it carries the old NHS number and the new one
-- (when known) sealed. Its id is a uuid5 over the LA, the old number's subject
-- key and the new number's subject key (or 'inactive'), so the primary key
-- makes queueing the same change for the same LA a no-op; subject keys, not
-- numbers, go into the uuid5, since one over a bare NHS number could be
-- reversed by trying them all.
--
-- acknowledged_by_sealed: the LA user (or system) that acknowledged the inbox
-- entry, sealed (purpose "acknowledged_by").
CREATE TABLE outbox (
    notification_id        uuid PRIMARY KEY,
    kind                   text NOT NULL DEFAULT 'access'
                           CHECK (kind IN ('access', 'nhs-number-inactive')),
    la_ods                 text NOT NULL,
    access_event_id        uuid,
    subject_key            bytea NOT NULL,
    org_ods                text,
    plan_ids               text[] NOT NULL,
    created_at             timestamptz NOT NULL,
    state                  text NOT NULL DEFAULT 'pending',
    attempts               integer NOT NULL DEFAULT 0,
    next_attempt_at        timestamptz NOT NULL DEFAULT now(),
    delivered_at           timestamptz,
    last_error             text,
    acknowledged_at        timestamptz,
    old_nhs_sealed         bytea,
    new_nhs_sealed         bytea,
    user_key               bytea,
    acknowledged_by_sealed bytea,
    CONSTRAINT outbox_kind_fields CHECK (
        CASE kind
            WHEN 'access' THEN user_key IS NOT NULL AND org_ods IS NOT NULL
                AND old_nhs_sealed IS NULL AND new_nhs_sealed IS NULL
            ELSE access_event_id IS NULL AND user_key IS NULL AND org_ods IS NULL
                AND old_nhs_sealed IS NOT NULL
        END
    )
);
CREATE INDEX outbox_pending_idx ON outbox (next_attempt_at) WHERE state = 'pending';
-- The LA's repeat-notification window (local_authority.repeat_window_hours).
CREATE INDEX outbox_repeat_idx ON outbox (la_ods, subject_key, user_key, org_ods, created_at DESC);
CREATE INDEX outbox_inbox_idx ON outbox (la_ods, created_at DESC);
-- The LA inbox lists NHS number changes apart from attendances; a partial index
-- keeps that listing from scanning every attendance of a busy LA.
CREATE INDEX outbox_nhs_number_inactive_idx ON outbox (la_ods, created_at DESC)
    WHERE kind = 'nhs-number-inactive';

CREATE TABLE subscription (
    id                 uuid PRIMARY KEY,
    la_ods             text NOT NULL REFERENCES local_authority (ods_code),
    client_id          text NOT NULL,
    status             text NOT NULL CHECK (status IN ('requested', 'active', 'error', 'off')),
    topic              text NOT NULL,
    reason             text,
    endpoint           text NOT NULL,
    -- channel.header values, each "Name: value", sent with every request
    headers            text[] NOT NULL DEFAULT '{}',
    payload            text NOT NULL CHECK (payload IN ('empty', 'id-only', 'full-resource')),
    heartbeat_seconds  integer CHECK (heartbeat_seconds IS NULL OR heartbeat_seconds > 0),
    timeout_seconds    integer NOT NULL DEFAULT 10 CHECK (timeout_seconds BETWEEN 1 AND 120),
    end_at             timestamptz,
    events_since_start bigint NOT NULL DEFAULT 0,
    last_sent_at       timestamptz,
    error              text,
    version            integer NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX subscription_la_idx ON subscription (la_ods);

-- An LA's MESH mailbox for notifications (and upload acknowledgements).
CREATE TABLE la_mesh (
    la_ods      text PRIMARY KEY REFERENCES local_authority (ods_code),
    mailbox     text NOT NULL,
    workflow_id text NOT NULL DEFAULT 'CPIS_NOTIFICATION'
);

CREATE TABLE delivery (
    id              bigserial PRIMARY KEY,
    notification_id uuid NOT NULL,
    la_ods          text NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('rest-hook', 'mesh')),
    -- the subscription id, or the MESH mailbox
    target          text NOT NULL,
    -- events-since-subscription-start numbering, for rest-hook deliveries
    event_number    bigint,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    last_error      text,
    UNIQUE (channel, target, notification_id)
);
-- The dispatcher delivers, per target, the oldest pending delivery first.
CREATE INDEX delivery_pending_idx ON delivery (target, id) WHERE state = 'pending';
CREATE INDEX delivery_due_idx ON delivery (next_attempt_at) WHERE state = 'pending';
CREATE INDEX delivery_dead_idx ON delivery (la_ods) WHERE state = 'dead';
CREATE INDEX delivery_replay_idx ON delivery (target, event_number) WHERE channel = 'rest-hook';

-- --- The local person index ------------------------------------------------------

-- CPIS_PERSON_INDEX=local (issue 4): a copy of what PDS holds for the people an
-- LA's children may be, loaded from an extract by `cpis person-index load FILE`.
--   subject_key     the keyed hash of the NHS number (Vault.subject_key), the
--                   same one plans are keyed by, so the two can be joined
--   sealed          the person's details (NHS number, names, birth date, sex,
--                   postcode, superseded-by number) as one AES-GCM value
--                   (Vault.seal, purpose "person-index"): one seal per row
--                   keeps a million-row load practical
--   fingerprint     a keyed hash of the whole row (Vault.blind), so a re-load
--                   can tell a changed row from an unchanged one without
--                   opening either
--   superseded_key  the subject key of the number that replaced this one
--   block_keys      keyed hashes of the row's blocking keys
--                   (cpis.matching.blocking.record_keys, Vault.blind), so
--                   tracing finds candidates with one GIN index lookup
CREATE TABLE person_index (
    subject_key    bytea PRIMARY KEY,
    sealed         bytea NOT NULL,
    fingerprint    bytea NOT NULL,
    superseded_key bytea,
    sensitive      boolean NOT NULL,
    active         boolean NOT NULL,
    block_keys     bytea[] NOT NULL,
    loaded_at      timestamptz NOT NULL,
    -- A superseded number is never in use: its replacement is.
    CHECK (superseded_key IS NULL OR NOT active)
);
CREATE INDEX person_index_block_idx ON person_index USING gin (block_keys);
CREATE INDEX person_index_superseded_idx ON person_index (superseded_key)
    WHERE superseded_key IS NOT NULL;

-- --- The security audit log ---------------------------------------------------------

-- Every request, silent ones included (SPEC §3), one line each, appended by
-- audit_append() and never updated or deleted (the triggers are bound in
-- cpis/schema/functions/audit_log_is_append_only.sql). xid is the id of the
-- transaction that wrote the line: seals cover the lines of finished
-- transactions (cpis/schema/functions/audit_seal_next.sql). The user is kept as in
-- access_event: user_key to find a person's lines by equality, user_sealed
-- (purpose "user_id") to read who it was.
CREATE TABLE audit_log (
    seq         bigint PRIMARY KEY,
    at          timestamptz NOT NULL,
    action      text NOT NULL,
    outcome     integer NOT NULL,
    client_id   text,
    role        text,
    org_ods     text,
    resource    text,
    subject     text,
    trace_id    text,
    detail      jsonb NOT NULL DEFAULT '{}',
    xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    user_key    bytea,
    user_sealed bytea
);
-- audit_log_seq must keep CACHE 1 (its default): a session's cached numbers
-- would be drawn before that session's transaction, and the sealer relies on a
-- line's transaction id being taken before its seq (audit_append).
CREATE SEQUENCE audit_log_seq OWNED BY audit_log.seq;
ALTER TABLE audit_log ALTER COLUMN seq SET DEFAULT nextval('audit_log_seq');
CREATE INDEX audit_log_xid_idx ON audit_log (xid);

-- One seal per batch: the lines written by transactions with ids in
-- [xid_lo, xid_hi), saying which seq numbers are accounted for, signed by the
-- service (cpis.adapters.audit_log holds the format of `hash`, the key and the
-- checks). seq_void lists, as inclusive [from, to] pairs, the seq numbers up
-- to seq_final that no line will ever carry (their transaction rolled back, or
-- the sequence skipped them in a crash); seq_ceiling and xid_ceiling are what
-- later seals work seq_final out from. A seal of no lines (first_seq NULL)
-- only moves seq_final on: it is made once after the last lines of a busy
-- spell, so that they too are accounted for without waiting for the next line.
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
