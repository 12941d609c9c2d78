-- Delivery of notifications (issue 3). The outbox row is the one logical
-- notification per LA per access event (its id is what receivers de-duplicate
-- on) and also the LA's web-inbox entry. The dispatcher fans each outbox row
-- out to one delivery per channel the LA has configured (each active
-- rest-hook Subscription, its MESH mailbox) and delivers those.

ALTER TABLE outbox
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN acknowledged_by text;
-- state: 'pending' until fanned out to deliveries, then 'fanned'.
CREATE INDEX outbox_inbox_idx ON outbox (la_ods, created_at DESC);

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
