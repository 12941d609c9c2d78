-- People signed in to the web pages (issue 12): each organisation's OpenID
-- Connect provider, sign-ins under way, and sessions. Kept in PostgreSQL so
-- that any replica serves any request.

-- One provider per organisation (an LA's tenant, or NHS CIS2 for a health
-- organisation), registered by `cpis la sign-in` / `cpis org sign-in`.
-- private_key_jwt: the service authenticates at the token endpoint with a JWT
-- signed by its own signing key (published at /.well-known/jwks.json); otherwise
-- with client_secret, sealed (the data key), or, NULL, as a public client (PKCE).
-- role_values: {"claim value": "caseworker" | "manager" | "clinician"}.
CREATE TABLE web_sign_in_config (
    org_ods       text PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('la', 'health')),
    issuer        text NOT NULL,
    client_id     text NOT NULL,
    client_secret bytea,
    roles_claim   text NOT NULL,
    role_values   jsonb NOT NULL DEFAULT '{}',
    scope         text NOT NULL DEFAULT '',
    private_key_jwt boolean NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- A sign-in begun and not yet finished: found by the hash of a random value in
-- the browser's cookie (never stored itself), used once. What the callback must
-- check (state, nonce, PKCE verifier) is sealed.
CREATE TABLE web_sign_in_pending (
    key        bytea PRIMARY KEY,
    org_ods    text NOT NULL,
    sealed     bytea NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX web_sign_in_pending_expires ON web_sign_in_pending (expires_at);

-- A signed-in person's session: found by the SHA-256 of the session id in the
-- browser's cookie (the id itself is never stored). Who the person is (id,
-- name, job role) and the ID token kept for logout are staff personal data,
-- sealed like an access event's viewer; role and organisation are not.
CREATE TABLE web_session (
    key          bytea PRIMARY KEY,
    org_ods      text NOT NULL,
    role         text NOT NULL CHECK (role IN ('caseworker', 'manager', 'clinician')),
    sealed_user  bytea NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX web_session_last_seen ON web_session (last_seen_at);
